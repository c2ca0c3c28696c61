"""Stable Diffusion backends (diffusers): ``text2img`` and ``dafusion`` (textual inversion + img2img).

Importing this package is cheap; torch / diffusers load inside the modules that need them
(``backend`` registers both backends in :mod:`synthmix.generation.registry` on import).
"""
