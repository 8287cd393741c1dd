"""Makes mnist_cnn.pt: the network of mnist.py trained for a few seconds on drawn digits.

MNIST itself is not downloaded; the ten digits of draw_digit.py, each at a few shifts, are
enough for the network to tell them apart. Seeded, so every run makes the same weights.
"""

import torch
import torch.nn.functional as F
from draw_digit import draw_digit
from mnist import Net
from mnist_transforms import Compose, Normalize, ToTensor


def main() -> None:
    torch.manual_seed(0)
    transform = Compose([ToTensor(), Normalize((0.1307,), (0.3081,))])
    shifts = [(dx, dy) for dx in (-2, 0, 2) for dy in (-2, 0, 2)]
    images = torch.stack([transform(draw_digit(d, s)) for d in range(10) for s in shifts])
    labels = torch.tensor([d for d in range(10) for _ in shifts])

    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(30):
        optimizer.zero_grad()
        F.nll_loss(model(images), labels).backward()
        optimizer.step()

    model.eval()
    with torch.no_grad():
        correct = (model(images).argmax(1) == labels).sum().item()
    torch.save(model.state_dict(), "mnist_cnn.pt")
    print(f"wrote mnist_cnn.pt ({correct}/{len(labels)} drawings right)")


if __name__ == "__main__":
    main()
