"""Models: open_clip CLIPs (incl. the tiny shapes-world configs), their contrastive pretraining and the
frozen ResNet tower. `registry` names the architectures without importing torch; `clip` builds them."""
