import pathlib
import sys

# the tiny image builders in _images.py
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
