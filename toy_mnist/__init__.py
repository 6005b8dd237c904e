"""The toy experiment: a bias-free MLP trained with a VICReg-like loss on clean, noisy and clean-to-noisy MNIST."""
