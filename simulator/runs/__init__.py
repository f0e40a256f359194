"""Running scenarios: the scenario model, attacks, the chain, the runner, reconciliation."""
