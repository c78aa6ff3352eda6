from typing_extensions import Buffer

def margin(x: Buffer, nodes: Buffer, leaf: Buffer, depth: int, n_trees: int, n_features: int, base: float,
           sigmoid: bool, out: Buffer, /) -> None: ...
