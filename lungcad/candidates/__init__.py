"""Stage 3, candidates: a 2-D U-Net on axial slices gives a per-pixel nodule probability map."""
