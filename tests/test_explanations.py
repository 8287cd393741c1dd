"""``/explanations`` on a real server: Captum's Integrated Gradients attributions from an
``ImageClassifier`` subclass (TorchServe's MNIST example), checked against Captum run here;
a target the model has no class for is a 400 the worker survives; a server whose workers
cannot import Captum answers 501 naming the ``hookserve[explain]`` extra."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import requests
import torch
from captum.attr import IntegratedGradients
from PIL import Image
from test_vision_handlers import MNIST_HANDLER, MNIST_TRANSFORMS, MnistNet, digit_pixels, encoded, mnist_input

from helpers import Server, archive, post, pythonpath, serving
from hookserve.handlers.integrated_gradients import N_STEPS

# Importing this ``captum`` fails as it does where the extra is not installed.
NO_CAPTUM = "raise ImportError(\"No module named 'captum' (blocked by the test)\")\n"


@pytest.fixture(scope="module")
def mnist(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """The model and the store holding its archive."""
    work = tmp_path_factory.mktemp("explain-mnist")
    torch.manual_seed(0)
    model = MnistNet().eval()
    torch.jit.script(model).save(str(work / "mnist.pt"))
    archive(
        work,
        "mnist",
        "mnist_handler.py",
        files={"mnist_handler.py": MNIST_HANDLER, "mnist_transforms.py": MNIST_TRANSFORMS},
        flags=["--serialized-file", str(work / "mnist.pt"), "--extra-files", "mnist_transforms.py"],
    )
    return model, work / "store"


def mnist_server(store: Path, work: Path, env: dict | None = None) -> Server:
    return Server(["--model-store", str(store), "--workers", "1", "--models", "mnist=mnist.mar"], work, env=env)


def explain(server: Server, pixels: bytes, **params: str) -> requests.Response:
    png = encoded(Image.frombytes("L", (28, 28), pixels), "PNG")
    return post(server, "/explanations/mnist", data=png, params=params, headers={"Content-Type": "image/png"})


def expected_attributions(model: torch.nn.Module, pixels: bytes, target: int) -> torch.Tensor:
    return IntegratedGradients(model).attribute(mnist_input(pixels), target=target, n_steps=N_STEPS)[0]


def test_explanations_are_integrated_gradients_for_the_requested_target(mnist, tmp_path: Path) -> None:
    model, store = mnist
    with serving(mnist_server(store, tmp_path)) as server:
        for seed, params, target in [(1, {}, 0), (2, {"target": "7"}, 7)]:
            pixels = digit_pixels(seed)
            reply = explain(server, pixels, **params)
            assert reply.status_code == 200, reply.text
            attributions = torch.tensor(reply.json())
            expected = expected_attributions(model, pixels, target)
            assert attributions.shape == (1, 28, 28)
            torch.testing.assert_close(attributions, expected, atol=1e-5, rtol=0)
        # another target explains another class
        other = torch.tensor(explain(server, digit_pixels(2), target="3").json())
        assert not torch.allclose(other, expected)
        # a JSON body {"data": <base64 image>, "target": n} names its target too
        png = encoded(Image.frombytes("L", (28, 28), digit_pixels(2)), "PNG")
        by_json = post(server, "/explanations/mnist", json={"data": base64.b64encode(png).decode(), "target": 7})
        assert by_json.status_code == 200, by_json.text
        torch.testing.assert_close(torch.tensor(by_json.json()), expected, atol=1e-5, rtol=0)


def test_a_target_out_of_range_is_a_400_and_the_worker_keeps_serving(mnist, tmp_path: Path) -> None:
    model, store = mnist
    with serving(mnist_server(store, tmp_path)) as server:
        for target in ("10", "-1", "seven"):
            reply = explain(server, digit_pixels(3), target=target)
            assert reply.status_code == 400, reply.text
            assert reply.json()["type"] == "BadRequestException"
            assert target in reply.json()["message"]
        assert "the model has 10 classes" in explain(server, digit_pixels(3), target="10").json()["message"]
        reply = explain(server, digit_pixels(3), target="9")
        assert reply.status_code == 200, reply.text
        torch.testing.assert_close(
            torch.tensor(reply.json()[0]), expected_attributions(model, digit_pixels(3), 9)[0], atol=1e-5, rtol=0
        )


def test_without_captum_explanations_are_a_501_naming_the_extra(mnist, tmp_path: Path) -> None:
    model, store = mnist
    site = tmp_path / "site"
    (site / "captum").mkdir(parents=True)
    (site / "captum" / "__init__.py").write_text(NO_CAPTUM)
    with serving(mnist_server(store, tmp_path, env={"PYTHONPATH": pythonpath(site)})) as server:
        reply = explain(server, digit_pixels(4))
        assert reply.status_code == 501, reply.text
        body = reply.json()
        assert body["type"] == "ExplanationsNotSupportedException"
        assert "pip install hookserve[explain]" in body["message"]
        # predictions do not need Captum
        png = encoded(Image.frombytes("L", (28, 28), digit_pixels(4)), "PNG")
        prediction = post(server, "/predictions/mnist", data=png, headers={"Content-Type": "image/png"})
        assert prediction.status_code == 200, prediction.text
        with torch.inference_mode():
            assert prediction.json() == model(mnist_input(digit_pixels(4))).argmax(1).item()
