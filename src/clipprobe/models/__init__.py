"""Models: open_clip CLIPs (incl. the tiny shapes-world configs) and their contrastive pretraining. `registry`
names the architectures without importing torch; `clip` builds, saves and loads them (and picks the CLIP whose
tower counting and the decoders read); `pretrain` trains one from scratch."""
