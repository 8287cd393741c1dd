"""``ts.utils.hf_utils.download_model``: TorchServe 0.12's Hugging Face snapshot download (needs
``huggingface_hub``): the checkpoint, config and tokenizer files of ``model_id``."""

from __future__ import annotations

from huggingface_hub import snapshot_download


def download_model(
    model_id: str = "meta-llama/Meta-Llama-3.1-8B-Instruct",
    revision: str = "main",
    model_path: str = ".cache",
    use_auth_token: bool = True,
) -> str:
    """The local folder of the downloaded snapshot."""
    allow_patterns = ["*.json", "*.pt", "*.bin", "*.txt", "*.model", "*.pth", "*.safetensors", "original/*"]
    return snapshot_download(
        repo_id=model_id,
        revision=revision,
        allow_patterns=allow_patterns,
        cache_dir=model_path,
        use_auth_token=use_auth_token,
    )
