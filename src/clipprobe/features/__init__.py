"""Every frozen-feature path, through one image streamer (`stream`: the GPU fast path, the CPU fallback):
CLIP embeddings of images and prompts (`embed`, the embed stage's cache) and the frozen ResNet tower's pre-pool
and pooled maps with where their caches live (`tower`: counting, vqvae and segment)."""
