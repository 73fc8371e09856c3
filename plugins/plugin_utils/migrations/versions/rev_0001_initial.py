# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Initial schema: identity, flavors, images, networks/subnets/ports, compute nodes,
allocations, instances, volumes and the per-instance step log.

PRIVATE to the collection. Frozen: change the schema with a new revision, never here.
"""

from __future__ import annotations

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    # Imported here, not at module level, so the file imports cleanly without Alembic
    # (ansible-test's import sanity test loads every file under plugins/).
    from alembic import op
    import sqlalchemy as sa

    op.create_table(
        'compute_nodes',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('hostname', sa.String(length=255), nullable=False),
        sa.Column('vcpus', sa.Integer(), nullable=False),
        sa.Column('memory_mb', sa.Integer(), nullable=False),
        sa.Column('local_gb', sa.Integer(), nullable=False),
        sa.Column('arch', sa.String(length=32), nullable=True),
        sa.Column('hypervisor_type', sa.String(length=32), nullable=True),
        sa.Column('hypervisor_version', sa.Integer(), nullable=True),
        sa.Column('virt_type', sa.String(length=16), nullable=True),
        sa.Column('reserved_host_memory_mb', sa.Integer(), nullable=False),
        sa.Column('cpu_allocation_ratio', sa.Float(), nullable=False),
        sa.Column('ram_allocation_ratio', sa.Float(), nullable=False),
        sa.Column('disk_allocation_ratio', sa.Float(), nullable=False),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('hostname')
    )
    op.create_table(
        'flavors',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('vcpus', sa.Integer(), nullable=False),
        sa.Column('ram_mb', sa.Integer(), nullable=False),
        sa.Column('disk_gb', sa.Integer(), nullable=False),
        sa.Column('extra_specs', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name')
    )
    op.create_table(
        'images',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('owner', sa.String(length=36), nullable=True),
        sa.Column('visibility', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('disk_format', sa.String(length=16), nullable=False),
        sa.Column('container_format', sa.String(length=16), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=True),
        sa.Column('virtual_size', sa.BigInteger(), nullable=True),
        sa.Column('checksum', sa.String(length=32), nullable=True),
        sa.Column('os_hash_algo', sa.String(length=16), nullable=True),
        sa.Column('os_hash_value', sa.String(length=128), nullable=True),
        sa.Column('location', sa.Text(), nullable=True),
        sa.Column('properties', sa.JSON(), nullable=False),
        sa.Column('min_disk', sa.Integer(), nullable=False),
        sa.Column('min_ram', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id')
    )
    op.create_table(
        'instance_steps',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=False),
        sa.Column('seed_steps', sa.String(length=16), nullable=False),
        sa.Column('service', sa.String(length=32), nullable=False),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=True),
        sa.Column('vm_state_from', sa.String(length=32), nullable=True),
        sa.Column('task_state_from', sa.String(length=32), nullable=True),
        sa.Column('vm_state', sa.String(length=32), nullable=True),
        sa.Column('task_state', sa.String(length=32), nullable=True),
        sa.Column('changed', sa.Boolean(), nullable=False),
        sa.Column('ms', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_instance_steps_instance_uuid'), 'instance_steps', ['instance_uuid'], unique=False)
    op.create_table(
        'networks',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('bridge', sa.String(length=15), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name')
    )
    op.create_table(
        'projects',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name')
    )
    op.create_table(
        'volumes',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('project_id', sa.String(length=36), nullable=False),
        sa.Column('size_gb', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=True),
        sa.Column('pool', sa.String(length=64), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=True),
        sa.Column('device', sa.String(length=16), nullable=True),
        sa.Column('delete_on_termination', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_volumes_instance_uuid'), 'volumes', ['instance_uuid'], unique=False)
    op.create_table(
        'allocations',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('consumer_id', sa.String(length=36), nullable=False),
        sa.Column('compute_node_id', sa.String(length=36), nullable=False),
        sa.Column('vcpus', sa.Integer(), nullable=False),
        sa.Column('memory_mb', sa.Integer(), nullable=False),
        sa.Column('disk_gb', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['compute_node_id'], ['compute_nodes.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('consumer_id')
    )
    op.create_table(
        'instances',
        sa.Column('uuid', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('project_id', sa.String(length=36), nullable=False),
        sa.Column('user_id', sa.String(length=36), nullable=False),
        sa.Column('flavor_id', sa.String(length=36), nullable=False),
        sa.Column('image_id', sa.String(length=36), nullable=True),
        sa.Column('vm_state', sa.String(length=32), nullable=False),
        sa.Column('task_state', sa.String(length=32), nullable=True),
        sa.Column('power_state', sa.String(length=16), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=True),
        sa.Column('request', sa.JSON(), nullable=False),
        sa.Column('fault', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=True),
        sa.Column('launched_at', sa.DateTime(), nullable=True),
        sa.Column('deleted_at', sa.DateTime(), nullable=True),
        sa.Column('deleted', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['flavor_id'], ['flavors.id'], ),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'], ),
        sa.PrimaryKeyConstraint('uuid'),
        sa.UniqueConstraint('project_id', 'name', 'deleted', name='uniq_instances0project_id0name0deleted')
    )
    op.create_table(
        'subnets',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('network_id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('cidr', sa.String(length=64), nullable=False),
        sa.Column('gateway_ip', sa.String(length=64), nullable=True),
        sa.Column('dhcp_ip', sa.String(length=64), nullable=True),
        sa.Column('pool_start', sa.String(length=64), nullable=False),
        sa.Column('pool_end', sa.String(length=64), nullable=False),
        sa.Column('dns_servers', sa.JSON(), nullable=False),
        sa.Column('enable_dhcp', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['network_id'], ['networks.id'], ),
        sa.PrimaryKeyConstraint('id')
    )
    op.create_table(
        'users',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('password_hash', sa.String(length=512), nullable=False),
        sa.Column('default_project_id', sa.String(length=36), nullable=True),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['default_project_id'], ['projects.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name')
    )
    op.create_table(
        'ports',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('network_id', sa.String(length=36), nullable=False),
        sa.Column('subnet_id', sa.String(length=36), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=True),
        sa.Column('device_owner', sa.String(length=64), nullable=False),
        sa.Column('mac', sa.String(length=17), nullable=False),
        sa.Column('ip', sa.String(length=64), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['network_id'], ['networks.id'], ),
        sa.ForeignKeyConstraint(['subnet_id'], ['subnets.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('network_id', 'mac', name='uniq_ports0network_id0mac'),
        sa.UniqueConstraint('subnet_id', 'ip', name='uniq_ports0subnet_id0ip')
    )
    op.create_index(op.f('ix_ports_instance_uuid'), 'ports', ['instance_uuid'], unique=False)
    op.create_table(
        'role_assignments',
        sa.Column('user_id', sa.String(length=36), nullable=False),
        sa.Column('project_id', sa.String(length=36), nullable=False),
        sa.Column('role', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
        sa.PrimaryKeyConstraint('user_id', 'project_id', 'role')
    )


def downgrade():
    from alembic import op

    op.drop_table('role_assignments')
    op.drop_index(op.f('ix_ports_instance_uuid'), table_name='ports')
    op.drop_table('ports')
    op.drop_table('users')
    op.drop_table('subnets')
    op.drop_table('instances')
    op.drop_table('allocations')
    op.drop_index(op.f('ix_volumes_instance_uuid'), table_name='volumes')
    op.drop_table('volumes')
    op.drop_table('projects')
    op.drop_table('networks')
    op.drop_index(op.f('ix_instance_steps_instance_uuid'), table_name='instance_steps')
    op.drop_table('instance_steps')
    op.drop_table('images')
    op.drop_table('flavors')
    op.drop_table('compute_nodes')
