"""TorchServe's MNIST handler (examples/image_classifier/mnist/mnist_handler.py); only the
import differs: with torchvision installed, ``from torchvision import transforms`` works here
unchanged."""

import mnist_transforms as transforms

from hookserve.handlers.image_classifier import ImageClassifier


class MNISTDigitClassifier(ImageClassifier):
    """MNIST digit classifier: the reply is the digit, not the top-5 probabilities."""

    image_processing = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])

    def postprocess(self, data):
        return data.argmax(1).tolist()
