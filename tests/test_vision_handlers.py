"""The vision handlers (``VisionHandler``, ``image_classifier``, ``image_segmenter``,
``object_detector``) on real tiny models, archived with ``hookserve archive`` and served by a
real server: replies match the models run here, and bad images are 400s the worker survives."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
import requests
import torch
from PIL import Image

from helpers import Server, archive, post, serving
from hookserve.archive.writing import BUILTIN_HANDLERS
from hookserve.errors import BadRequest
from hookserve.handlers.image_transforms import image_tensor, to_tensor
from hookserve.handlers.vision_handler import VisionHandler
from hookserve.plugins.handlers import hookserve_handler_classes

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
# The MNIST example's torchvision-free Compose, ToTensor and Normalize (torchvision is not a
# test dependency), in their own module as there: a handler module holds one class.
MNIST_TRANSFORMS = (Path(__file__).resolve().parents[1] / "examples" / "mnist" / "mnist_transforms.py").read_text()
# TorchServe's MNIST example handler.
MNIST_HANDLER = """
from mnist_transforms import Compose, Normalize, ToTensor

from hookserve.handlers.image_classifier import ImageClassifier


class MNISTDigitClassifier(ImageClassifier):
    image_processing = Compose([ToTensor(), Normalize((0.1307,), (0.3081,))])

    def postprocess(self, data):
        return data.argmax(1).tolist()
"""
# The same processing with the image classifier's own reply (topk probabilities).
MNIST_TOPK_HANDLER = MNIST_HANDLER.split("    def postprocess")[0]
DETECTOR_LABELS = '{"1": "cat", "2": "dog", "3": "bird"}'


class MnistNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.fc = torch.nn.Linear(4 * 13 * 13, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2), 1))


class TinySegmenter(torch.nn.Module):
    """torchvision's segmentation output shape: ``{"out": [N, classes, H, W]}`` (here 28x28)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 8, stride=8)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.conv(x)}


class TinyDetector(torch.nn.Module):
    """torchvision's detection output shape: per image, classes 1-3 scored by the channel
    means, with boxes scaled from the image size."""

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        detections: list[dict[str, torch.Tensor]] = []
        for image in images.unbind(0):
            scores = image.mean(dim=(1, 2))
            height, width = float(image.shape[1]), float(image.shape[2])
            boxes = torch.stack([scores, scores * 2, scores * width, scores * height], dim=1)
            detections.append({"boxes": boxes, "labels": torch.tensor([1, 2, 3]), "scores": scores})
        return detections


def digit_pixels(seed: int) -> bytes:
    generator = torch.Generator().manual_seed(seed)
    return bytes(torch.randint(0, 256, (28 * 28,), generator=generator, dtype=torch.uint8).tolist())


def encoded(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def mnist_input(pixels: bytes) -> torch.Tensor:
    tensor = torch.tensor(list(pixels), dtype=torch.float32).view(1, 1, 28, 28) / 255
    return (tensor - MNIST_MEAN) / MNIST_STD


def png_claiming_size(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height``: Pillow refuses it on open."""
    data = encoded(Image.new("L", (8, 8)), "PNG")
    ihdr_start = 8 + 8  # signature, then the IHDR chunk's length and type
    fields = struct.pack(">II", width, height) + data[ihdr_start + 8 : ihdr_start + 13]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + fields))
    return data[:ihdr_start] + fields + crc + data[ihdr_start + 17 :]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.nn.Module]:
    work = tmp_path_factory.mktemp("vision-models")
    torch.manual_seed(0)
    built = {"mnist": MnistNet().eval(), "segmenter": TinySegmenter().eval(), "detector": TinyDetector().eval()}
    for name, model in built.items():
        torch.jit.script(model).save(str(work / f"{name}.pt"))
    built["dir"] = work
    return built


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models: dict) -> Server:
    work = tmp_path_factory.mktemp("vision-serve")
    weights = models["dir"]
    archive(
        work,
        "mnist",
        "mnist_handler.py",
        files={"mnist_handler.py": MNIST_HANDLER, "mnist_transforms.py": MNIST_TRANSFORMS},
        flags=["--serialized-file", str(weights / "mnist.pt"), "--extra-files", "mnist_transforms.py"],
    )
    archive(
        work,
        "mnist_topk",
        "mnist_handler.py",
        files={
            "mnist_handler.py": MNIST_TOPK_HANDLER,
            "mnist_transforms.py": MNIST_TRANSFORMS,
            "model-config.yaml": "handler:\n  topk: 3\n",
        },
        flags=[
            "--serialized-file",
            str(weights / "mnist.pt"),
            "--extra-files",
            "mnist_transforms.py",
            "--config-file",
            "model-config.yaml",
        ],
    )
    archive(work, "segmenter", "image_segmenter", flags=["--serialized-file", str(weights / "segmenter.pt")])
    archive(
        work,
        "detector",
        "object_detector",
        files={"index_to_name.json": DETECTOR_LABELS},
        flags=["--serialized-file", str(weights / "detector.pt"), "--extra-files", "index_to_name.json"],
    )
    names = ["mnist", "mnist_topk", "segmenter", "detector"]
    args = ["--model-store", str(work / "store"), "--workers", "1", "--models", *[f"{n}={n}.mar" for n in names]]
    with serving(Server(args, work)) as srv:
        yield srv


def post_image(server: Server, model: str, data: bytes, content_type: str = "image/png") -> requests.Response:
    return post(server, f"/predictions/{model}", data=data, headers={"Content-Type": content_type})


# --- replies ---------------------------------------------------------------------------


def test_mnist_handler_applies_its_image_processing(server: Server, models: dict) -> None:
    for seed, image_format in [(1, "PNG"), (2, "PNG")]:
        pixels = digit_pixels(seed)
        reply = post_image(server, "mnist", encoded(Image.frombytes("L", (28, 28), pixels), image_format))
        assert reply.status_code == 200, reply.text
        with torch.inference_mode():
            expected = models["mnist"](mnist_input(pixels)).argmax(1).item()
        assert reply.json() == expected


def test_image_classifier_subclass_keeps_topk_replies(server: Server, models: dict) -> None:
    pixels = digit_pixels(3)
    reply = post_image(server, "mnist_topk", encoded(Image.frombytes("L", (28, 28), pixels), "PNG"))
    assert reply.status_code == 200, reply.text

    with torch.inference_mode():
        probabilities = torch.softmax(models["mnist"](mnist_input(pixels)), dim=1)[0]
    top = torch.topk(probabilities, 3)
    expected = {str(c): p for c, p in zip(top.indices.tolist(), top.values.tolist(), strict=True)}
    assert list(reply.json()) == list(expected)
    assert reply.json() == pytest.approx(expected, abs=1e-5)


def test_nested_list_pixels_skip_image_processing(server: Server, models: dict) -> None:
    pixels = mnist_input(digit_pixels(4))[0]
    reply = post(server, "/predictions/mnist", json=pixels.tolist())
    assert reply.status_code == 200, reply.text
    with torch.inference_mode():
        assert reply.json() == models["mnist"](pixels.unsqueeze(0)).argmax(1).item()


def test_image_segmenter_replies_each_pixels_class_and_probability(server: Server, models: dict) -> None:
    image = Image.new("RGB", (300, 260), (30, 160, 90))
    image.paste(Image.new("RGB", (150, 260), (220, 40, 10)), (150, 0))
    data = encoded(image, "JPEG")
    reply = post_image(server, "segmenter", data, "image/jpeg")
    assert reply.status_code == 200, reply.text

    with torch.inference_mode():
        logits = models["segmenter"](image_tensor(Image.open(io.BytesIO(data))).unsqueeze(0))["out"]
    probs, classes = torch.softmax(logits, dim=1).max(dim=1)
    served = torch.tensor(reply.json())
    assert served.shape == (28, 28, 2)
    assert torch.equal(served[..., 0], classes[0].float())
    assert torch.allclose(served[..., 1], probs[0], atol=1e-5)


def test_object_detector_replies_labelled_boxes_over_the_threshold(server: Server) -> None:
    color = (200, 150, 20)  # channel means 0.78, 0.59, 0.08: class 3 is under 0.5
    reply = post_image(server, "detector", encoded(Image.new("RGB", (40, 30), color), "PNG"))
    assert reply.status_code == 200, reply.text

    expected = []
    for name, value in zip(["cat", "dog"], color[:2], strict=True):
        score = value / 255
        expected.append({name: [score, score * 2, score * 40, score * 30], "score": score})
    served = reply.json()
    assert [list(detection) for detection in served] == [list(detection) for detection in expected]
    for got, want in zip(served, expected, strict=True):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-5)


def test_every_loadable_builtin_handler_is_archived_by_name() -> None:
    # hookserve archive records these names rather than looking for a handler file.
    assert {handler.name for handler in hookserve_handler_classes()} <= BUILTIN_HANDLERS


# --- bad input -------------------------------------------------------------------------

PNG_DIGIT = encoded(Image.frombytes("L", (28, 28), digit_pixels(5)), "PNG")
JPEG_DIGIT = encoded(Image.frombytes("L", (28, 28), digit_pixels(5)), "JPEG")
ROW = [0.0] * 28


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"these bytes are no image", "application/octet-stream", "not an image Pillow can read"),
        (PNG_DIGIT[: len(PNG_DIGIT) // 2], "image/png", "truncated or corrupt"),
        (JPEG_DIGIT[: len(JPEG_DIGIT) // 2], "image/jpeg", "truncated or corrupt"),
        (png_claiming_size(20_000, 10_000), "image/png", "too many pixels"),
        (b"[[[1, 2], [3]]]", "application/json", "nested list of numbers"),
        (str([ROW] * 28).encode(), "application/json", "got shape [28, 28]"),
        (b'"@@not base64@@"', "application/json", "text that is not base64"),
        (b'"aGVsbG8="', "application/json", "not an image Pillow can read"),
    ],
    ids=[
        "not-an-image",
        "truncated-png",
        "truncated-jpeg",
        "decompression-bomb",
        "ragged-list",
        "2d-list",
        "not-base64",
        "base64-not-an-image",
    ],
)
def test_bad_input_is_a_400_and_the_worker_keeps_serving(
    server: Server, body: bytes, content_type: str, message: str
) -> None:
    reply = post_image(server, "mnist", body, content_type)
    assert reply.status_code == 400, reply.text
    assert reply.json()["type"] == "BadRequestException"
    assert message in reply.json()["message"]
    assert reply.json()["message"].startswith("request 0: ")

    assert post_image(server, "mnist", PNG_DIGIT).status_code == 200


def test_images_of_different_shapes_in_one_batch_are_a_bad_request() -> None:
    handler = VisionHandler()
    handler.device = torch.device("cpu")
    rows = [{"body": encoded(Image.new("RGB", size), "PNG")} for size in [(4, 3), (5, 3)]]
    with pytest.raises(BadRequest, match=r"request 0: \[3, 3, 4\], request 1: \[3, 3, 5\]"):
        handler.preprocess(rows)
    assert handler.preprocess(rows[:1]).shape == (1, 3, 3, 4)


def test_to_tensor_keeps_bands_and_scales_bytes() -> None:
    rgba = to_tensor(Image.new("RGBA", (2, 1), (255, 51, 0, 102)))
    assert rgba.shape == (4, 1, 2)
    assert rgba[:, 0, 1].tolist() == pytest.approx([1.0, 0.2, 0.0, 0.4])
    assert to_tensor(Image.new("1", (3, 2), 1)).tolist() == [[[1.0] * 3] * 2]
    assert to_tensor(Image.new("I;16", (3, 2))).shape == (3, 2, 3)
