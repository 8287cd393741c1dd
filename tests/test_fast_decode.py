"""The ``fast_decode`` handler setting (``handler: {fast_decode: true}`` in model-config.yaml):
the default image classifier, served for real, decodes a large JPEG at a reduced DCT scale
(Pillow's ``draft``) and its reply is the model's answer on that decode; without the setting
replies are today's, full decodes; a wrong value or a handler it cannot serve fails the load
with an error naming the setting."""

from __future__ import annotations

import io

import pytest
import requests
import torch
from PIL import Image

from helpers import Server, archive, mgmt, photo_like, post, serving
from hookserve.handlers.fast_decode import fast_decode_setting
from hookserve.handlers.image_transforms import RESIZE, image_tensor, to_tensor
from hookserve.handlers.vision_handler import open_image

CLASSES = 10
# A subclass with its own processing: fast_decode cannot know its target size.
OWN_PROCESSING_HANDLER = """
import torch

from hookserve.handlers.image_classifier import ImageClassifier


def small_tensor(image):
    return torch.zeros(3, 224, 224)


class OwnProcessing(ImageClassifier):
    image_processing = staticmethod(small_tensor)
"""


class SmallCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 5, stride=2),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(4),
        )
        self.fc = torch.nn.Linear(16 * 16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


def probabilities(model: torch.nn.Module, data: bytes, reduced: bool) -> dict[str, float]:
    """The image classifier's reply computed here: every class, as ``topk: 10`` replies."""
    with torch.inference_mode():
        tensor = image_tensor(open_image(data, 0, reduced=reduced))
        probs = torch.softmax(model(tensor.unsqueeze(0)), dim=1)[0]
    return {str(index): probability for index, probability in enumerate(probs.tolist())}


def top(reply: dict[str, float], count: int) -> list[str]:
    return sorted(reply, key=reply.__getitem__, reverse=True)[:count]


def largest_gap(one: dict[str, float], other: dict[str, float]) -> float:
    return max(abs(one[label] - other[label]) for label in one)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    torch.manual_seed(0)
    built = SmallCNN().eval()
    with torch.no_grad():
        built.fc.weight.mul_(20)  # spread the probabilities, so the top 5 is an order worth keeping
    return built


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model: torch.nn.Module) -> Server:
    work = tmp_path_factory.mktemp("fast-decode")
    weights = work / "cnn.pt"
    torch.jit.script(model).save(str(weights))
    configs = {
        "fast": "handler:\n  fast_decode: true\n  topk: 10\n",
        "full": "handler:\n  topk: 10\n",
        "off": "handler:\n  fast_decode: false\n  topk: 10\n",
        "bad": 'handler:\n  fast_decode: "yes please"\n',
        "detector": "handler:\n  fast_decode: true\n",
    }
    for name, config in configs.items():
        handler = "object_detector" if name == "detector" else "image_classifier"
        archive(
            work,
            name,
            handler,
            files={"model-config.yaml": config},
            flags=["--serialized-file", str(weights), "--config-file", "model-config.yaml"],
        )
    archive(
        work,
        "own",
        "own_handler.py",
        files={"own_handler.py": OWN_PROCESSING_HANDLER, "model-config.yaml": configs["detector"]},
        flags=["--serialized-file", str(weights), "--config-file", "model-config.yaml"],
    )
    names = ["fast", "full", "off"]
    args = ["--model-store", str(work / "store"), "--workers", "1", "--models", *[f"{n}={n}.mar" for n in names]]
    with serving(Server(args, work)) as srv:
        yield srv


def classify(server: Server, model_name: str, data: bytes) -> dict[str, float]:
    reply = post(server, f"/predictions/{model_name}", data=data, headers={"Content-Type": "image/jpeg"})
    assert reply.status_code == 200, reply.text
    assert len(reply.json()) == CLASSES
    return reply.json()


def test_a_1080p_jpeg_is_decoded_reduced_and_keeps_the_top_5(server: Server, model: torch.nn.Module) -> None:
    data = photo_like(1920, 1080)
    reduced, full = probabilities(model, data, reduced=True), probabilities(model, data, reduced=False)
    # The two decodes give visibly different answers, so the reply says which one was served.
    assert largest_gap(reduced, full) > 1e-4

    served = classify(server, "fast", data)
    assert served == pytest.approx(reduced, abs=1e-6)
    assert largest_gap(served, full) > 1e-4

    unreduced = classify(server, "full", data)
    assert top(served, 5) == top(unreduced, 5)
    inputs_full = image_tensor(open_image(data, 0))
    inputs_reduced = image_tensor(open_image(data, 0, reduced=True))
    mean_difference = float((inputs_full - inputs_reduced).abs().mean())
    print(f"fast_decode at 1920x1080: mean |Δ| of the input tensors {mean_difference:.4f} (normalized units)")
    assert mean_difference < 0.05


@pytest.mark.parametrize("model_name", ["full", "off"])
def test_without_fast_decode_replies_are_the_full_decodes(
    server: Server, model: torch.nn.Module, model_name: str
) -> None:
    data = photo_like(1920, 1080)
    # As before the setting existed: Pillow's full decode through image_tensor.
    assert torch.equal(image_tensor(open_image(data, 0)), image_tensor(Image.open(io.BytesIO(data))))
    served = classify(server, model_name, data)
    assert served == pytest.approx(probabilities(model, data, reduced=False), abs=1e-6)
    assert largest_gap(served, probabilities(model, data, reduced=True)) > 1e-4


def test_an_image_too_small_to_reduce_is_decoded_in_full(server: Server) -> None:
    # 640x480: half of the short side (240) would be under the resize's 256.
    data = photo_like(640, 480)
    assert classify(server, "fast", data) == classify(server, "full", data)


def test_a_png_is_decoded_in_full(server: Server) -> None:
    data = photo_like(1920, 1080, image_format="PNG")
    assert classify(server, "fast", data) == classify(server, "full", data)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_greyscale_and_cmyk_jpegs_are_reduced_and_made_rgb(server: Server, model: torch.nn.Module, mode: str) -> None:
    data = photo_like(1920, 1080, mode)
    image = open_image(data, 0, reduced=True)
    assert (image.mode, image.size) == (mode, (480, 270))
    assert image_tensor(image).shape == (3, 224, 224)
    served = classify(server, "fast", data)
    assert served == pytest.approx(probabilities(model, data, reduced=True), abs=1e-6)
    assert largest_gap(served, probabilities(model, data, reduced=False)) > 1e-4


@pytest.mark.parametrize(
    ("size", "decoded"),
    [
        ((1920, 1080), (480, 270)),
        ((1080, 1920), (270, 480)),
        ((4000, 3000), (500, 375)),
        ((2048, 1024), (512, 256)),
        ((512, 512), (256, 256)),
        ((511, 2000), (511, 2000)),
        ((640, 480), (640, 480)),
        ((200, 100), (200, 100)),
    ],
)
def test_the_reduction_keeps_the_short_side_at_least_the_resize(
    size: tuple[int, int], decoded: tuple[int, int]
) -> None:
    data = io.BytesIO()
    Image.new("RGB", size, (90, 30, 200)).save(data, format="JPEG")
    image = open_image(data.getvalue(), 0, reduced=True)
    assert image.size == decoded
    # The largest of the reductions 1/2, 1/4, 1/8 that keeps the short side >= RESIZE.
    scale = size[0] // decoded[0]
    assert min(decoded) >= RESIZE or decoded == size
    assert scale == 8 or min(size) // (2 * scale) < RESIZE


@pytest.mark.parametrize(
    ("model_name", "message"),
    [
        ("bad", "handler.fast_decode must be true or false; got 'yes please'"),
        ("detector", "handler.fast_decode: true needs the default image_processing"),
        ("own", "OwnProcessing sets its own, whose target size is unknown"),
    ],
)
def test_a_setting_it_cannot_honour_fails_the_load_naming_it(server: Server, model_name: str, message: str) -> None:
    params = {"url": f"{model_name}.mar", "initial_workers": "1", "synchronous": "true"}
    reply = mgmt(server, "POST", "/models", params=params)
    assert reply.status_code == 500, reply.text
    assert message in reply.json()["message"]
    assert requests.get(server.url(f"/models/{model_name}", "management"), timeout=30).status_code == 404


def test_the_setting_is_a_yaml_boolean() -> None:
    assert fast_decode_setting({}, "ImageClassifier", image_tensor) is False
    assert fast_decode_setting({"fast_decode": False}, "ObjectDetector", to_tensor) is False
    assert fast_decode_setting({"fast_decode": True}, "ImageClassifier", image_tensor) is True
    with pytest.raises(ValueError, match="handler.fast_decode must be true or false; got 'true'"):
        fast_decode_setting({"fast_decode": "true"}, "ImageClassifier", image_tensor)
