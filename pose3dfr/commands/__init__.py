"""Command-line handlers (the CLI layer): each takes argparse's namespace, calls the library, prints, returns
an exit code. pose3dfr/cli.py declares the arguments and names these as "module:function"."""
