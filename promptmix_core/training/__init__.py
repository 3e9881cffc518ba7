"""Step 3 of PromptMix: fine-tuning, evaluation, prediction and the training job.

Importing this package is cheap: torch and transformers are imported inside the functions that
need them.

    from promptmix_core.training import TrainConfig, build_training_data, train, predict
    ts = build_training_data(task, store.list_examples(), label_source="a2")
    result = train(TrainConfig(epochs=5), ts.texts, ts.targets, label_names=ts.labels,
                   out_dir="models/run1", store=store, run_id=run_id)
    labels, probs = predict("models/run1", ["a new text"])
"""

from .callbacks import FunctionCallback, PrintCallback, StoreCallback, TrainerCallback
from .config import (
    ModelLoadError,
    TrainConfig,
    bundled_model_path,
    default_learning_rate,
    resolve_model_name,
)
from .data import LABEL_SOURCES, TrainingSet, build_training_data, example_label, stratified_split
from .jobs import run_training_job, train_job
from .metrics import aggregate, compute_metrics, format_confusion, mean_std
from .model_io import (
    Classifier,
    check_safetensors_folder,
    get_classifier,
    load_classifier,
    predict,
    save_model,
)
from .trainer import TrainResult, train

__all__ = [
    "Classifier",
    "FunctionCallback",
    "LABEL_SOURCES",
    "ModelLoadError",
    "PrintCallback",
    "StoreCallback",
    "TrainConfig",
    "TrainResult",
    "TrainerCallback",
    "TrainingSet",
    "aggregate",
    "build_training_data",
    "bundled_model_path",
    "check_safetensors_folder",
    "compute_metrics",
    "default_learning_rate",
    "example_label",
    "format_confusion",
    "get_classifier",
    "load_classifier",
    "mean_std",
    "predict",
    "resolve_model_name",
    "run_training_job",
    "save_model",
    "stratified_split",
    "train",
    "train_job",
]
