"""CLI handlers that are not a library module's own (argparse Namespace in, exit code out)."""
