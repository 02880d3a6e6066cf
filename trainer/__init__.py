"""Training of DOPE-style keypoint networks: networks, targets, augmentation, data, loop, checkpoints."""
