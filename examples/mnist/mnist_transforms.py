"""Stand-ins for the three torchvision transforms the MNIST handler uses, so the example runs
without torchvision. With torchvision installed, ``from torchvision import transforms`` in
mnist_handler.py does the same and this file is not needed."""

import torch


class Compose:
    """``transforms.Compose``: the steps applied in order."""

    def __init__(self, steps):
        self.steps = steps

    def __call__(self, image):
        for step in self.steps:
            image = step(image)
        return image


class ToTensor:
    """``transforms.ToTensor`` for greyscale images: a 1 x height x width tensor in [0, 1]."""

    def __call__(self, image):
        image = image.convert("L")
        width, height = image.size
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        return pixels.view(1, height, width).float() / 255


class Normalize:
    """``transforms.Normalize``: (tensor - mean) / std, one value per channel."""

    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def __call__(self, tensor):
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (tensor - mean) / std
