"""Training systems (LightningModules around the plain models) and the train task."""
