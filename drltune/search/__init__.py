"""`drltune search`: Optuna samples and prunes (re-init aware), Ray Tune runs the trials."""
from drltune.search.runner import SearchSpec, run_search
from drltune.search.space import SearchSpace, load_space
from drltune.search.storage import open_storage, resolve_storage_url

__all__ = ["SearchSpec", "SearchSpace", "load_space", "open_storage", "resolve_storage_url", "run_search"]
