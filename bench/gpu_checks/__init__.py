"""The checks and measurements of ``bench/gpu_check.sh``, one module per concern.

- :mod:`.common`: the run's settings (device, smoke size, tolerances), trainers on synthetic batches;
- :mod:`.training`: DINOv2 step numerics (precision, fused AdamW, torch.compile);
- :mod:`.attention`: which scaled-dot-product-attention kernel the ViT really runs;
- :mod:`.ddp`: the torchrun worker that checks that DDP ranks stay identical;
- :mod:`.n2n`: Neighbor2Neighbor fp16 denoising and training throughput;
- :mod:`.throughput`: DINOv2 step throughput and FLOP utilisation, probe feature extraction;
- :mod:`.report`: the JSON document (entries, order, ``all_ok``) and its summary; imports no torch.
"""
