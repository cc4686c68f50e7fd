"""Callbacks for training libraries: trainwatch.integrations.lightning (PyTorch Lightning) and
trainwatch.integrations.transformers (Hugging Face's Trainer). Each needs its library
installed (`pip install 'trainwatch[integrations]'`)."""
