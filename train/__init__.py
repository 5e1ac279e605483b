"""Training, evaluation, export and data-generation commands (`mad-train`)."""
