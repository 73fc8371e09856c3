# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An index on allocations.compute_node_id: the scheduler sums every provider's usage, and a claim one
provider's, by that column.

PRIVATE to the collection. Frozen: change the schema with a new revision, never here.

One new index: no row changes.
"""

from __future__ import annotations

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    from alembic import op

    op.create_index("ix_allocations_compute_node_id", "allocations", ["compute_node_id"])


def downgrade():
    """Drops the index (the scheduler is slower at thousands of allocations, nothing else changes)."""
    from alembic import op

    op.drop_index("ix_allocations_compute_node_id", table_name="allocations")
