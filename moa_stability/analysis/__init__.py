"""Analysis on top of the model: the stability report, symbolic derivations, the optimiser."""
