"""Which Arrow column types feature pipelines read in Arrow, without a Python object per value."""

from __future__ import annotations

from typing import Any

import pandas as pd


def arrow_list_type(kind: Any) -> bool:
    """True for a list of strings or numbers: batch jobs keep such Parquet and JSON Lines columns
    as Arrow arrays (inference.portal.sources), and pipelines flatten them in Arrow."""
    import pyarrow as pa

    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        return False
    value = kind.value_type
    return bool(pa.types.is_string(value) or pa.types.is_large_string(value)
                or pa.types.is_integer(value) or pa.types.is_floating(value))


def arrow_lists(dtype: Any) -> bool:
    """True for an Arrow-backed column of an ``arrow_list_type``."""
    return isinstance(dtype, pd.ArrowDtype) and arrow_list_type(dtype.pyarrow_dtype)
