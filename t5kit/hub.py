"""Datasets from the Hugging Face hub, with one-line errors when the hub cannot serve them."""

from __future__ import annotations

import datasets

from t5kit.args import UsageError


def load_hub_dataset(name: str, config: str | None, split: str, local_hint: str, **kwargs):
    """`datasets.load_dataset(name, config, split=split, **kwargs)`; a hub that cannot be reached (no network,
    HF_DATASETS_OFFLINE=1) or a name it does not know is a UsageError naming the dataset and `local_hint` (the flag
    that reads local files instead), not a 30-line traceback."""
    what = f"{name}" + (f" ({config})" if config else "")
    try:
        return datasets.load_dataset(name, config, split=split, **kwargs)
    except datasets.exceptions.DatasetNotFoundError as err:
        raise UsageError(f"dataset {what}: not found on the Hugging Face hub ({err}); {local_hint}") from None
    except ConnectionError as err:  # what datasets raises when neither the hub nor its cache has the dataset
        raise UsageError(f"dataset {what}: the Hugging Face hub cannot be reached ({err}); {local_hint}") from None
