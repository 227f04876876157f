"""Part II, Objectives: the losses a language model is trained to minimise."""

__all__: list[str] = []
