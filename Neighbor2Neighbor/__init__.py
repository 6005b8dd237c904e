"""Neighbor2Neighbor: a self-supervised denoiser trained on noisy images only (Huang et al., CVPR 2021)."""
