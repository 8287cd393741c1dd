"""TorchServe 0.12's vision handlers against hookserve's, served (issue 14, parity).

Each archive is built by the real ``torch-model-archiver`` 0.12 and holds torchvision models
(a seeded ``resnet18(weights=None)``, a scripted LRASPP segmentation model, a small Faster R-CNN)
or a TorchServe-style handler that sets torchvision transforms as ``image_processing``.
TorchServe's backend runs the archive extracted (``torchserve_reference``), with the requests as
one batch; hookserve serves the ``.mar`` over HTTP with ``batch_size`` 3 and the same requests sent
at once. Every reply must equal TorchServe's (``parity.compare``: same structure and labels,
numbers within 1e-5), and the image classifier's must equal a direct torchvision computation.
"""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms

from helpers import Server, post, serving
from parity import compare, torch_model_archiver
from torchserve_reference import Field, extract_archive, torchserve_replies

BATCH = 3
CLASSIFIER_MODEL = """
from torchvision.models.resnet import BasicBlock, ResNet


class ResNet18(ResNet):
    \"\"\"torchvision's resnet18, as TorchServe's resnet-18 example defines it for an eager archive.\"\"\"

    def __init__(self):
        super().__init__(BasicBlock, [2, 2, 2, 2])
"""
DETECTOR_MODEL = """
import torch
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign


class TinyDetector(FasterRCNN):
    \"\"\"torchvision's Faster R-CNN on a two-layer backbone and small images: the detection
    models' output (one dict of boxes, labels and scores per image) at test speed.\"\"\"

    def __init__(self):
        backbone = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
            torch.nn.ReLU(),
        )
        backbone.out_channels = 16
        super().__init__(
            backbone,
            num_classes=4,
            min_size=24,
            max_size=32,
            rpn_anchor_generator=AnchorGenerator(sizes=((8, 16),), aspect_ratios=((0.5, 1.0, 2.0),)),
            box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2),
        )
"""
DIGITS_MODEL = """
import torch


class Digits(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.fc = torch.nn.Linear(4 * 26 * 26, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))
"""
# Written as TorchServe's MNIST example is: torchvision transforms as image_processing. Its
# preprocess notes each batch's size where BATCH_LOG says (hookserve's server only), which shows
# that hookserve ran these requests batched.
DIGITS_HANDLER = """
import os

from torchvision import transforms
from ts.torch_handler.image_classifier import ImageClassifier


class DigitClassifier(ImageClassifier):
    image_processing = transforms.Compose(
        [
            transforms.Grayscale(),
            transforms.Resize((28, 28)),
            transforms.ToTensor(),
            transforms.Normalize((0.1307,), (0.3081,)),
        ]
    )

    def preprocess(self, data):
        if os.environ.get("BATCH_LOG"):
            with open(os.environ["BATCH_LOG"], "a") as log:
                log.write(f"{len(data)}\\n")
        return super().preprocess(data)
"""
# TorchServe's own get_insights, copied as handlers copy it: ``self.ig`` is set by TorchServe's
# VisionHandler.initialize (hookserve's makes it on first use).
IG_HANDLER = """
from torchvision import transforms
from ts.torch_handler.vision_handler import VisionHandler


class DigitExplainer(VisionHandler):
    image_processing = transforms.Compose([transforms.Grayscale(), transforms.Resize((28, 28)), transforms.ToTensor()])

    def postprocess(self, data):
        return data.argmax(1).tolist()

    def get_insights(self, tensor_data, _, target=0):
        return self.ig.attribute(tensor_data, target=target, n_steps=15).tolist()
"""
IMAGENET = transforms.Compose(
    [
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ]
)
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}


def image_bytes(size: tuple[int, int], fmt: str, seed: int) -> bytes:
    """A smooth random picture (noise upscaled): JPEG keeps it recognisable, resizing matters."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 256, (8, 8, 3), dtype=torch.uint8, generator=generator)
    image = Image.frombytes("RGB", (8, 8), coarse.numpy().tobytes()).resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def resnet18() -> torch.nn.Module:
    torch.manual_seed(18)
    return torchvision.models.resnet18(weights=None).eval()


# (bytes, content type) per request: PNG, JPEG and base64 text, of sizes that resize differently.
CLASSIFIER_INPUTS = [
    (image_bytes((300, 375), "PNG", 1), "image/png"),
    (image_bytes((640, 480), "JPEG", 2), "image/jpeg"),
    (base64.b64encode(image_bytes((49, 49), "PNG", 3)), "text/plain"),
]
SEGMENTER_INPUTS = [
    (image_bytes((320, 240), "JPEG", 4), "image/jpeg"),
    (image_bytes((200, 260), "PNG", 5), "image/png"),
]
# The detector's images are stacked unresized: one size for the batch. Small, so that box
# coordinates (pixels) stay below 32, where float32's spacing is far under 1e-5.
DETECTOR_INPUTS = [
    (image_bytes((32, 24), fmt, seed), CONTENT_TYPES[fmt]) for fmt, seed in [("PNG", 6), ("JPEG", 7), ("PNG", 8)]
]
DIGITS_INPUTS = [
    (image_bytes((56, 56), "PNG", 9), "image/png"),
    (image_bytes((28, 28), "JPEG", 10), "image/jpeg"),
    (image_bytes((40, 30), "PNG", 11), "image/png"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """The four archives, written by torch-model-archiver 0.12."""
    work = tmp_path_factory.mktemp("vision-parity")
    files = {
        "resnet.py": CLASSIFIER_MODEL,
        "detector.py": DETECTOR_MODEL,
        "digits.py": DIGITS_MODEL,
        "digit_handler.py": DIGITS_HANDLER,
        "ig_handler.py": IG_HANDLER,
        # ImageNet's file form: {"index": ["wordnet id", "label"]}
        "imagenet_labels/index_to_name.json": json.dumps({str(i): [f"n{i:08d}", f"class {i}"] for i in range(1000)}),
        "detector_labels/index_to_name.json": json.dumps({"0": "__background__", "1": "cat", "2": "dog", "3": "bird"}),
    }
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    torch.save(resnet18().state_dict(), work / "resnet18.pt")

    torch.manual_seed(21)
    segmenter = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=5
    )
    torch.jit.script(segmenter.eval()).save(str(work / "segmenter.pt"))

    namespace: dict = {}
    exec(DETECTOR_MODEL, namespace)
    torch.manual_seed(22)
    detector = namespace["TinyDetector"]()
    with torch.no_grad():
        # Random weights score every class about alike (~0.25); sharper logits put about half
        # the detections above the handler's 0.5 threshold, of several classes.
        detector.roi_heads.box_predictor.cls_score.weight.mul_(200)
        detector.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([-2.0, 0.0, 0.0, 0.0]))
    torch.save(detector.state_dict(), work / "detector.pt")

    namespace = {}
    exec(DIGITS_MODEL, namespace)
    torch.manual_seed(23)
    torch.save(namespace["Digits"]().state_dict(), work / "digits.pt")

    store = work / "store"
    eager = ["--model-file", "--serialized-file"]
    archives = {
        "resnet18": [*eager[:1], "resnet.py", eager[1], "resnet18.pt", "--handler", "image_classifier",
                     "--extra-files", "imagenet_labels/index_to_name.json"],
        "segmenter": ["--serialized-file", "segmenter.pt", "--handler", "image_segmenter"],
        "detector": [*eager[:1], "detector.py", eager[1], "detector.pt", "--handler", "object_detector",
                     "--extra-files", "detector_labels/index_to_name.json"],
        "digits": [*eager[:1], "digits.py", eager[1], "digits.pt", "--handler", "digit_handler.py"],
        "digits_ig": [*eager[:1], "digits.py", eager[1], "digits.pt", "--handler", "ig_handler.py"],
    }  # fmt: skip
    for name, flags in archives.items():
        torch_model_archiver(store, name, *[str(work / flag) if (work / flag).is_file() else flag for flag in flags])
    return store


@pytest.fixture(scope="module")
def server(store: Path, tmp_path_factory):
    args = ["--model-store", str(store), "--workers", "1", "--batch-size", str(BATCH), "--max-batch-delay", "3000"]
    names = ("resnet18", "segmenter", "detector", "digits", "digits_ig")
    work = tmp_path_factory.mktemp("vision-serve")
    models = ["--models", *[f"{name}={name}.mar" for name in names]]
    srv = Server([*args, *models], work, env={"BATCH_LOG": str(work / "batches")})
    with serving(srv):
        yield srv


def served(server: Server, model: str, inputs: list[tuple[bytes, str]], api: str = "predictions") -> list:
    """hookserve's replies, the requests sent at once so that they make one batch."""

    def predict(item: tuple[bytes, str]):
        body, content_type = item
        return post(server, f"/{api}/{model}", data=body, headers={"Content-Type": content_type})

    with ThreadPoolExecutor(len(inputs)) as pool:
        replies = list(pool.map(predict, inputs))
    for reply in replies:
        assert reply.status_code == 200, reply.text
    return [json.loads(reply.content) for reply in replies]


def reference(
    torchserve: Path, store: Path, model: str, inputs: list[tuple[bytes, str]], tmp: Path, explain: bool = False
) -> list:
    """TorchServe's replies to the same requests as one batch, on the same archive extracted
    (``explain``: as its frontend sends ``/explanations``, with the ``explain`` header)."""
    model_dir = extract_archive(store / f"{model}.mar", tmp / model)
    requests = [{"body": Field(body, content_type)} for body, content_type in inputs]
    headers = [{"explain": "True"}] * len(inputs) if explain else None
    replies = torchserve_replies(torchserve, model_dir, requests, model_name=model, headers=headers)
    for reply in replies:
        assert reply.status == 200, reply.body
    return [reply.json() for reply in replies]


@pytest.mark.parametrize(
    ("case", "model", "inputs"),
    [
        ("image_classifier resnet18", "resnet18", CLASSIFIER_INPUTS),
        ("image_segmenter lraspp", "segmenter", SEGMENTER_INPUTS),
        ("object_detector faster-rcnn", "detector", DETECTOR_INPUTS),
        ("torchvision transforms handler", "digits", DIGITS_INPUTS),
        ("VisionHandler subclass", "digits_ig", DIGITS_INPUTS),
    ],
    ids=["image_classifier", "image_segmenter", "object_detector", "transforms_subclass", "vision_subclass"],
)
def test_replies_are_torchserves(case, model, inputs, torchserve, store, server, tmp_path, parity_figures):
    ours = served(server, model, inputs)
    theirs = reference(torchserve, store, model, inputs, tmp_path)
    parity_figures[case] = found = compare(ours, theirs)
    if model == "detector":
        # Confident detections of several labels, each named through index_to_name.json.
        labels = {label for reply in ours for detection in reply for label in detection if label != "score"}
        assert len(labels) >= 2 and labels <= {"cat", "dog", "bird"}
        assert all(detection["score"] >= 0.5 for reply in ours for detection in reply)
    if model == "digits":
        # hookserve runs a request at once when no other can be on its way, so the first of a
        # round may go alone; a second round (the same replies) makes a batch of several sure.
        found.add(compare(served(server, model, inputs), theirs))
        batches = [int(size) for size in (server.log_path.parent / "batches").read_text().split()]
        assert sum(batches) == 2 * len(inputs) and max(batches) > 1, batches


@pytest.mark.parametrize("model", ["digits", "digits_ig"])
def test_explanations_are_torchserves(model, torchserve, store, server, tmp_path, parity_figures):
    """``/explanations`` (Integrated Gradients for class 0, the default target): hookserve's
    ``get_insights`` (``digits``) and TorchServe's own, which calls ``self.ig`` (``digits_ig``)."""
    ours = served(server, model, DIGITS_INPUTS, api="explanations")
    theirs = reference(torchserve, store, model, DIGITS_INPUTS, tmp_path, explain=True)
    parity_figures[f"explanations {model}"] = found = compare(ours, theirs)
    assert found.numbers == len(DIGITS_INPUTS) * 28 * 28


def test_resnet18_top5_is_torchvisions(server):
    """The served top 5 is torchvision's own computation: transforms, resnet18, softmax, topk."""
    ours = served(server, "resnet18", CLASSIFIER_INPUTS)
    model = resnet18()
    for reply, (body, content_type) in zip(ours, CLASSIFIER_INPUTS, strict=True):
        image = Image.open(io.BytesIO(base64.b64decode(body) if content_type == "text/plain" else body))
        with torch.inference_mode():
            probabilities = torch.softmax(model(IMAGENET(image).unsqueeze(0)), dim=1)
        top = torch.topk(probabilities, 5, dim=1)
        expected = {
            f"class {index}": prob for index, prob in zip(top.indices[0].tolist(), top.values[0].tolist(), strict=True)
        }
        compare(reply, expected)


def converted(body: bytes, mode: str) -> bytes:
    """``body`` as a PNG of mode ``mode``."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(body)).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_image_modes_torchserve_cannot_classify(mode, torchserve, store, server, tmp_path, parity_figures):
    """A difference on purpose: TorchServe's ImageClassifier feeds a greyscale, RGBA or palette
    PNG to ``Normalize`` with its channels as they are and fails the batch; hookserve's classifies
    it as RGB, which is TorchServe's reply to the same picture sent as an RGB PNG."""
    body = converted(CLASSIFIER_INPUTS[0][0], mode)
    model_dir = extract_archive(store / "resnet18.mar", tmp_path / "resnet18")
    (failed,) = torchserve_replies(torchserve, model_dir, [{"body": Field(body, "image/png")}], model_name="resnet18")
    assert failed.status >= 500, failed
    (ours,) = served(server, "resnet18", [(body, "image/png")])
    (theirs,) = reference(torchserve, store, "resnet18", [(converted(body, "RGB"), "image/png")], tmp_path / "rgb")
    parity_figures[f"image_classifier {mode} PNG (TorchServe: as RGB)"] = compare(ours, theirs)
