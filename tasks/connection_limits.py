"""How many PostgreSQL connections an RDS instance class can hold, from its memory.

RDS's default for PostgreSQL is max_connections = LEAST(DBInstanceClassMemory / 9531392, 5000):
about 9.09 MiB a connection. phasegate writes the number down instead of the formula, so it
shows in plans and alarms (the DatabaseConnections alarm fires at a share of it), with the MiB
per connection tunable (`database.memory_per_connection_mib`).
"""

import math
import re

from phasegate.errors import ConfigError

_SIZE_MIB = {
    "micro": 1024, "small": 2048, "medium": 4096, "large": 8192, "xlarge": 16384,
    "2xlarge": 32768, "4xlarge": 65536, "8xlarge": 131072,
}  # fmt: skip
"""Memory of the burstable (t3, t4g) and general-purpose (m5, m6g, m7g) classes by size."""

_MEMORY_OPTIMISED = re.compile(r"^db\.(r|x)\d+[a-z]*\.")
"""r and x classes hold twice the memory of an m class of the same size (r6g.large: 16 GiB)."""

MIN_CONNECTIONS = 20
MAX_CONNECTIONS = 5000


def class_memory_mib(instance_class: str) -> int:
    """The memory of `instance_class` (db.t4g.micro: 1024 MiB), as AWS lists it."""
    size = instance_class.rsplit(".", 1)[-1]
    if size not in _SIZE_MIB:
        raise ConfigError(f"no memory figure for RDS instance class {instance_class!r}")
    return _SIZE_MIB[size] * (2 if _MEMORY_OPTIMISED.match(instance_class) else 1)


def max_connections(instance_class: str, memory_per_connection_mib: float) -> int:
    """floor(memory / MiB per connection), kept between 20 and 5000."""
    sized = math.floor(class_memory_mib(instance_class) / memory_per_connection_mib)
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, sized))
