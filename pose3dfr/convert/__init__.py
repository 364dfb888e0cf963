"""Conversion of the pretrained networks' original files into the project's safetensors, used only by the CLI
(`pose3dfr convert-dlib`: dlib.py with dlib_dat.py, the .dat reader; `pose3dfr convert-sface`: sface.py). The
networks themselves, and the loaders of the converted files, are in pose3dfr.models; nothing at run time reads
the original files."""
