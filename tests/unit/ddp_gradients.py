"""Helper for test_training: gradients of one training step, written by rank 0.

python ddp_gradients.py DATA.h5 OUT.pt              (one process)
torchrun --nproc-per-node 2 ddp_gradients.py ...     (two gloo ranks)
"""

import sys

import numpy as np
import torch

from gnnmd.data.dataset import ForceDataset
from gnnmd.models import untrained_model
from gnnmd.nn.potential import PotentialConfig
from gnnmd.train import Trainer, TrainingConfig

torch.set_num_threads(1)
dataset = ForceDataset(sys.argv[1])
network = PotentialConfig(hidden_channels=16, num_filters=16, num_interactions=2, num_rbf=12, cutoff_nm=1.0)
native = [(dataset.topologies[0], dataset.frames(0, [0])[0][0])]
model = untrained_model(network, native, seed=4).double()
trainer = Trainer(model, dataset, TrainingConfig(epochs=1, batch_size=16, seed=3), sys.argv[2] + ".run")
shard = trainer.global_batches(0)[0][trainer.rank :: trainer.world]
squared, count = trainer.squared_error(trainer.loader(np.asarray(shard), torch.float64))
(squared / count).backward()
if trainer.rank == 0:
    # Parameters that only shift the energy (the readout's last bias) get no force gradient.
    gradients = {name: p.grad.clone() for name, p in model.network.named_parameters() if p.grad is not None}
    torch.save(gradients, sys.argv[2])
