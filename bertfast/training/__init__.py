"""Fine-tune a BERT-family sequence classifier with Hugging Face `Trainer`.

`train(TrainConfig(...))` is the verb and `bertfast train` its command line (`trainer.py`).
The rest of the package is what it stands on, one concern a module:

- `checkpoints.py`: the model to start from, its tokenizer, and its weights with a new head;
- `data.py`: labeled text from a built-in name, a file, class folders or the hub, split by
  `splits.py` into `texts.py`'s rows; `labels.py` reads the labels as the task's;
  `builtin_data.py` and `hub.py` are the two sources that are not local files;
- `args.py`: what Trainer gets besides the data (TrainingArguments, optimizer, loss, metrics);
- `outputs.py`: the test-set report and the finished model folder.

Training sits beside the exporter, not under it: it imports the floor modules (`compat`,
`errors`, `tasks`, `families`, ...) and the runtime's file readers, and nothing of the
exporter, serve or bench (`tests/test_structure.py` checks it).
"""

from __future__ import annotations

from .trainer import TrainConfig, add_arguments, main, train

__all__ = ["TrainConfig", "train", "add_arguments", "main"]
