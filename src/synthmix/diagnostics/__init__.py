"""Diagnostics of synthetic images: fidelity, coverage, diversity, memorisation, labels; export.

Pure functions over feature arrays (numpy in, floats out) live in small modules:

- :mod:`.manifold`     k-NN precision / recall (Kynkäänniemi et al. 2019), density / coverage
                       (Naeem et al. 2020), with batched matrix-product k-NN;
- :mod:`.fid`          Fréchet distance (FID) and kernel distance (KID) between two feature sets;
- :mod:`.diversity`    mean pairwise feature distance within a set;
- :mod:`.memorisation` nearest real image of each synthetic image (feature cosine, pixels);
- :mod:`.labels`       label agreement of a real-trained classifier; CAS read from a run;
- :mod:`.relate`       rank correlation of each diagnostic with the downstream effect.

:mod:`.inspect` runs them over a manifest (``inspect_manifest``), :mod:`.features` provides
the feature spaces, :mod:`.export` writes an ImageFolder + Hugging Face metadata + Parquet.
Nothing here imports torch at module import time.
"""
