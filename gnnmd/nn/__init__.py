"""Neural-network building blocks: radial bases, SchNet, priors, the full potential."""
