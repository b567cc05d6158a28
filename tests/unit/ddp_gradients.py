"""Helper for test_training: gradients of one training step, written by rank 0.

python ddp_gradients.py DATA.h5 OUT.pt              (one process)
torchrun --nproc-per-node 2 ddp_gradients.py ...     (two gloo ranks)
"""

import sys

import numpy as np
import torch

from gnnmd.data.dataset import ForceDataset
from gnnmd.distributed import initialize
from gnnmd.models import untrained_model
from gnnmd.nn.potential import PotentialConfig
from gnnmd.train import Trainer, TrainingConfig

torch.set_num_threads(1)
dataset = ForceDataset(sys.argv[1])
network = PotentialConfig(hidden_channels=16, num_filters=16, num_interactions=2, num_rbf=12, cutoff_nm=1.0)
native = [(dataset.topologies[0], dataset.frames(0, [0])[0][0])]
model = untrained_model(network, native, seed=4).double()
# With energies in the data the loss has all three terms, so every parameter (the readout's last
# bias too, which only shifts the energy) gets a gradient.
config = TrainingConfig(
    epochs=1, batch_size=16, seed=3, energy_weight=0.5 if dataset.has_energies[0] else 0.0, torsion_weight=2.0
)
initialize("cpu")  # the caller joins torchrun's process group
trainer = Trainer(model, dataset, config, sys.argv[2] + ".run")
shard = trainer.global_batches(0)[0][trainer.rank :: trainer.world]
trainer.loss(trainer.errors(trainer.loader(np.asarray(shard), torch.float64))).backward()
if trainer.rank == 0:
    gradients = {name: p.grad.clone() for name, p in model.network.named_parameters() if p.grad is not None}
    torch.save(gradients, sys.argv[2])
