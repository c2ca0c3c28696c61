"""Generators (embedded diffusion, Stable Diffusion text2img / DA-Fusion) behind one protocol."""
