"""synthmix: does diffusion-made data help my classifier, how much of it, and in what role?

Importing the package is cheap on purpose: heavy libraries (torch, diffusers, ...)
load inside the functions that need them.
"""

__version__ = "0.1.0"
