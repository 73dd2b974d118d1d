from drltune.registry import Registry

DATASETS: Registry = Registry("dataset")
