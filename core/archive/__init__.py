"""Model archives: reading what TorchServe serves, writing what torch-model-archiver writes."""
