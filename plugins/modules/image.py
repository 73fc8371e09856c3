#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: image
short_description: Register disk images in the bootflow image registry (local store or a real Glance)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Registry data of the OpenStack Nova boot request flow. In seed steps 19-21 nova-compute asks glance-api, with
    the auth token, for the image URI and metadata of the image ID in the boot request, and fetches the image from
    the image store. This module is the upload side of that, C(openstack image create) against a Glance with a
    local file store on the controller.
  - With O(state=present), uploads O(filename) from the controller into the image store C(<state_dir>/images/<id>)
    and registers it. The file's real format is inspected and must match O(disk_format); C(checksum) (MD5) and
    C(os_hash_value) (SHA-512) are computed while copying. The image is V(saving) during the upload and becomes
    V(active) only once the file is complete; a failed upload leaves it V(killed).
  - With O(state=absent), marks every image of that name the caller can see as V(deleted) and removes its file
    from the store.
  - With O(state=deactivated), deactivates an existing image (Glance's C(POST /v2/images/<id>/actions/deactivate)).
    Its record and data stay, but it cannot be booted (nova-api's create and M(bootflow.cloud.image_fetch) refuse
    it, C(Image ... is not active (status deactivated)...)) until O(state=present) reactivates it. Instances
    already booted from it keep running.
  - The visibility of an existing image follows O(visibility) when it is given (C(PATCH /v2/images/<id>)).
  - With O(image_backend=glance), the same checks run on the controller, then the image is created in a real Glance
    (C(POST /v2/images) with O(name), O(disk_format), O(container_format), O(visibility), O(min_disk), O(min_ram)
    and O(properties) as Glance's own attributes and additional properties) and the file is streamed to it
    (C(PUT /v2/images/<id>/file)). Glance computes C(checksum) and C(os_hash_value) again; they must equal the ones
    computed here, else the Glance image is deleted and the task fails. The image gets Glance's ID, and a copy of
    its record is kept in the bootflow database. With O(state=absent), the images are deleted in Glance.
  - Needs a token with the V(admin) or V(member) role; O(visibility=public) needs V(admin). Images belong to the
    caller's project; only that project's members (or an admin) may change their visibility or deactivate and
    reactivate them (policy rules C(image:modify), C(image:deactivate), C(image:reactivate)), as Glance's default
    policy has it. Another project's image fails with RV(error=auth).
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.image_backend
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  name:
    description:
      - Name of the image. Names are not unique in Glance, but this module refuses to work on a name that matches
        several images visible to the caller (RV(error=conflict)); use distinct names.
      - The images "visible to the caller" are the ones its project sees by name (also for an admin), that is public
        images, the project's own (its community images included), and shared images the project has accepted
        (M(bootflow.cloud.image_member)).
      - Another project's V(community) image is never found by name, by anybody (admins included), as Glance does not
        list it unless asked; it is found by ID only. So it neither takes a name other projects boot by nor keeps
        anyone (the admin registering a public image of that name, another project registering its own) from
        using that name. Names are judged per owner project; a project that owns
        an image of a name and also sees a public one of that name must use the ID to boot either (RV(error=conflict)).
      - With O(state=deactivated), or O(state=present) without O(filename) and O(url), an existing image may also be
        given by its ID (an admin may name any image by ID).
      - An empty name, a name longer than 255 characters, one with control characters (newline, tab, NUL, C1 controls such as
        \x9b) or format characters (bidi overrides such as U+202E, zero-width spaces), or with
        leading or trailing whitespace fails the task.
    type: str
    required: true
  filename:
    description:
      - Path of the image file on the controller.
      - Who may read which file is the operator's decision (setting C(upload_dir) in section C(image) of the operator
        configuration, C(bootflow.yml) in the state dir or E(BOOTFLOW_CONFIG)), as Glance reads only what is uploaded
        to it. A user without the V(admin) role may only register a file whose real path (after every symlink and
        C(..)) is inside C(upload_dir); without C(upload_dir), only an admin may use O(filename). Anything else fails
        with RV(error=auth) before the file is opened.
      - For everybody, admins included, a file in bootflow's state (the state dir with its database, Fernet and
        credential keys, admin password and image store; the database file; the operator configuration), or a hard
        link of one, is refused with RV(error=auth).
      - The file may be at most C(image_size_cap) bytes (see O(url)) and counts against the project's image quota
        (M(bootflow.cloud.quota) C(image_count_total), C(image_size_total)); over it, the task fails with RV(error=quota) and nothing
        is recorded.
      - One of O(filename) and O(url) is required to register a new image. Without either, O(state=present) works on
        the existing image (its visibility, reactivation) and fails with RV(error=invalid) when there is none.
        A missing file fails the task with RV(error=invalid).
      - Not used with O(state=absent); refused with O(state=deactivated).
      - A qcow2 file with a backing file is refused; upload a self-contained image (C(qemu-img convert)).
    type: path
  url:
    description:
      - Upload from this C(http://) or C(https://) URL instead of a local file (Glance's C(web-download)). The
        controller streams the download into a private staging file in the image store, then registers it exactly
        like O(filename) (format inspection, hashes, idempotency) and removes the staging file.
      - Only http and https are accepted, and a redirect may only lead to another http(s) URL; C(file://), C(ftp://)
        or a bare path fail with RV(error=invalid), so a URL can never read the controller's own files.
      - "The operator's import filters apply, as Glance's C([import_filtering_opts]) for C(web-download) (section
        C(image) of the operator configuration; no task option overrides them): C(url_allowed_schemes) (default
        V(http), V(https)), C(url_allowed_ports) (default V(80), V(443)), C(url_allowed_hosts) (default any host;
        when set, only these host names, addresses or networks in CIDR notation), and C(url_allow_private)
        (default V(false)): no download from a loopback, private, link-local (for example the metadata service
        C(169.254.169.254)), shared, multicast, reserved or unspecified address unless the operator sets
        C(url_allow_private) or lists the host in C(url_allowed_hosts)."
      - The host name is resolved once and every address it resolves to must be allowed; the download connects to
        a checked address (a second DNS answer cannot redirect it). Every redirect (at most 5) is checked the same
        way before it is followed, and the URL's credentials are only sent to the URL's own host. A refused URL
        fails with RV(error=invalid) before any connection is made, and nothing is recorded.
      - The download stops as soon as it passes C(image_size_cap) (operator setting, bytes, default 1099511627776 =
        1 TiB as Glance's), or what is left of the project's C(image_size_total) quota, whatever the server's
        Content-Length says (a larger Content-Length refuses it at once, a missing one changes nothing). The
        staging file is removed and no image record is made (the download comes before the record). A new image
        needs room in the project's C(image_count_total) quota before anything is downloaded.
      - A user name and password in the URL are used for the download but never appear in a message or result.
      - An HTTP error, an unreachable server or a download whose content does not match O(disk_format) fails the
        task with RV(error=invalid) and leaves no image record and no file behind.
      - A re-run downloads the URL again to compare its content with the registered image.
      - Mutually exclusive with O(filename). One of the two is required to register a new image.
    type: str
  url_timeout:
    description:
      - Seconds to wait for the server of O(url) (connect and each read).
    type: int
    default: 60
  validate_certs:
    description:
      - Verify the TLS certificate of an C(https://) O(url).
    type: bool
    default: true
  disk_format:
    description:
      - Format of the image file. The file's content is inspected; a file that is not in this format (for example
        a qcow2 registered as V(raw)) fails the task with RV(error=invalid).
    type: str
    default: qcow2
    choices: [raw, qcow2]
  container_format:
    description:
      - Container format. Only V(bare) (no container) is supported.
    type: str
    default: bare
    choices: [bare]
  visibility:
    description:
      - Glance's four visibilities. V(private) images are visible to the owning project only; V(public) images to every
        project; V(community) images to every project too (Glance does not list another project's community images
        unless asked, and only its owner project finds it by name, other projects boot it by ID); V(shared) images to the owning project and the
        projects they are shared with (M(bootflow.cloud.image_member)).
      - V(public) needs the V(admin) role, otherwise the task fails with RV(error=auth) before anything is done.
      - A new image gets V(private) when this is omitted.
      - For an existing image (the same name and content, or no O(filename)), its visibility is changed to this when
        it differs, which only its owner project or an admin may do (RV(error=auth) otherwise). When omitted, an
        existing image keeps its visibility.
      - Making a shared image V(private) keeps its members; they see it again once it is V(shared) again.
    type: str
    choices: [public, community, shared, private]
  min_disk:
    description:
      - Smallest root disk in GiB the image needs. Creating an instance with a flavor whose O(bootflow.cloud.flavor#module:disk_gb)
        is smaller (and not 0) fails.
      - Only used when the image is created.
    type: int
    default: 0
  min_ram:
    description:
      - Smallest memory in MiB the image needs. Creating an instance with a flavor with less O(bootflow.cloud.flavor#module:ram_mb)
        fails.
      - Only used when the image is created.
    type: int
    default: 0
  properties:
    description:
      - Free-form image properties (Glance's additional properties), stored with the image and returned in
        RV(image.properties). The scheduler reads C(hw_architecture) and C(img_hv_type) (ImagePropertiesFilter).
      - Names of Glance's own image attributes (for example C(id), C(owner), C(status), C(visibility)) are refused.
      - With O(image_backend=glance), the values are sent as strings (Glance's properties are strings).
      - Only used when the image is created.
    type: dict
    default: {}
  state:
    description:
      - V(present) uploads and registers the image, or (for an existing image) sets O(visibility) and reactivates it
        when it is V(deactivated).
      - V(absent) deletes every image of that name visible to the caller; nothing happens when there is none.
      - V(deactivated) deactivates the existing image (status V(active) -> V(deactivated)); it fails with
        RV(error=not_found) when there is none, and with RV(error=conflict) for an image in another status
        (V(queued), V(saving), V(killed)). Glance's status machine is C(queued -> saving -> active) (or V(killed)),
        C(active <-> deactivated), then V(deleted).
    type: str
    default: present
    choices: [present, absent, deactivated]
attributes:
  check_mode:
    support: partial
    details:
      - With O(state=present), the file is inspected and hashed and the result predicted, but nothing is copied
        or registered.
      - With O(state=absent), a change is predicted whenever an image of that name exists, even if an instance
        still uses it (which makes the real run fail).
      - A visibility change, a deactivation or a reactivation is checked (who may, which status) and predicted
        without writing anything.
  diff_mode:
    support: full
    details:
      - Shows the image's ID, name, owner, visibility and status before and after (for O(state=absent), every image
        removed).
notes:
  - Images are immutable, as in Glance. The same O(name) with a file of the same content (same SHA-512) reports
    no change; the same name with different content is refused with RV(error=conflict), register the new file
    under a new name.
  - O(min_disk), O(min_ram) and O(properties) are only applied when the image is created; changing them for an
    existing image reports no change and does not update it. O(visibility) is applied to an existing image too.
  - Deactivating a deactivated image, reactivating an active one or setting the visibility it has reports no change.
  - O(state=absent) is refused with RV(error=conflict) while a live instance uses the image.
  - "Operator settings (section C(image) of the operator configuration; none can be set by a task): C(upload_dir),
    C(image_size_cap), C(url_allowed_schemes), C(url_allowed_ports), C(url_allowed_hosts), C(url_allow_private).
    A test or lab that downloads from a server on 127.0.0.1 opts in with, for example,
    C(image: {url_allowed_ports: [8080], url_allowed_hosts: [127.0.0.1]})."
  - With O(image_backend=glance), the image quotas are Glance's own (its unified limits); the size cap, the upload
    directory and the import filters apply here before anything is sent to Glance.
  - The image store lives in O(state_dir) on the controller; the hypervisor hosts fetch the file from there when
    an instance is booted (M(bootflow.cloud.image_fetch)).
seealso:
  - module: bootflow.cloud.image_member
  - module: bootflow.cloud.image_fetch
  - module: bootflow.cloud.instance
  - module: bootflow.cloud.flavor
"""

EXAMPLES = r"""
# With a token set for the whole play:
#
#   module_defaults:
#     group/bootflow.cloud.bootflow:
#       auth_token: "{{ bootflow_auth.token }}"

- name: Register an image straight from a web server (streamed, hashed, never held in memory)
  bootflow.cloud.image:
    name: debian-12
    url: https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2
    disk_format: qcow2
    visibility: public

- name: Download a Debian cloud image to the controller
  ansible.builtin.get_url:
    url: https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2
    dest: /var/tmp/debian-12-genericcloud-amd64.qcow2
    mode: "0644"
  delegate_to: localhost

- name: Register it as a public image (admin token)
  bootflow.cloud.image:
    auth_token: "{{ bootflow_auth.token }}"
    name: debian-12
    filename: /var/tmp/debian-12-genericcloud-amd64.qcow2
    disk_format: qcow2
    visibility: public
    min_disk: 3
    min_ram: 512
    properties:
      os_distro: debian
      os_version: "12"

- name: Register a raw image private to the caller's project (member token)
  bootflow.cloud.image:
    auth_token: "{{ alice_auth.token }}"
    name: appliance
    filename: /srv/images/appliance.raw
    disk_format: raw

- name: Register the test image in a real Glance (the caller's Keystone token is sent to it)
  bootflow.cloud.image:
    auth_token: "{{ bootflow_auth.token }}"
    image_backend: glance
    glance_url: http://127.0.0.1:9292
    name: cirros
    filename: /var/tmp/cirros-0.6.2-x86_64-disk.img
    disk_format: qcow2
    visibility: public
    properties:
      hw_disk_bus: virtio
      hw_vif_model: virtio

- name: Share an image of the caller's project (then add members with bootflow.cloud.image_member); no file needed
  bootflow.cloud.image:
    auth_token: "{{ alice_auth.token }}"
    name: appliance
    visibility: shared

- name: Withdraw an image from new boots (running instances keep running)
  bootflow.cloud.image:
    auth_token: "{{ alice_auth.token }}"
    name: appliance
    state: deactivated

- name: Bring it back
  bootflow.cloud.image:
    auth_token: "{{ alice_auth.token }}"
    name: appliance
    state: present

- name: Remove an image no instance uses any more
  bootflow.cloud.image:
    auth_token: "{{ bootflow_auth.token }}"
    name: debian-11
    state: absent
"""

RETURN = r"""
image:
  description:
    - The image record after the task.
    - V(null) when O(state=absent).
    - In check mode, when the image would be created, only C(name), C(disk_format), C(checksum) and C(size) are
      returned.
  returned: success
  type: dict
  contains:
    id:
      description: ID of the image; also the file name in the image store.
      type: str
      returned: success, except in check mode when the image would be created
      sample: 9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b
    name:
      description: Name of the image.
      type: str
      returned: success
      sample: debian-12
    owner:
      description: ID of the project that owns the image.
      type: str
      returned: success, except in check mode when the image would be created
      sample: 8a3c2f10-7b6d-4e5f-a1b2-c3d4e5f60718
    visibility:
      description: V(public), V(community), V(shared) or V(private).
      type: str
      returned: success, except in check mode when the image would be created
      sample: public
    status:
      description: Glance status, V(active) once the upload is complete, V(deactivated) after O(state=deactivated).
      type: str
      returned: success, except in check mode when the image would be created
      sample: active
    disk_format:
      description: Format of the image file.
      type: str
      returned: success
      sample: qcow2
    container_format:
      description: Container format.
      type: str
      returned: success, except in check mode when the image would be created
      sample: bare
    size:
      description: Size of the image file in bytes.
      type: int
      returned: success
      sample: 343736320
    virtual_size:
      description: Size of the disk the image describes in bytes (the file size for raw images).
      type: int
      returned: success, except in check mode when the image would be created
      sample: 3221225472
    checksum:
      description: MD5 of the file (Glance's legacy C(checksum)).
      type: str
      returned: success
      sample: 5d41402abc4b2a76b9719d911017c592
    os_hash_algo:
      description: Algorithm of RV(image.os_hash_value).
      type: str
      returned: success, except in check mode when the image would be created
      sample: sha512
    os_hash_value:
      description: SHA-512 of the file (Glance's multihash).
      type: str
      returned: success, except in check mode when the image would be created
      sample: 9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043
    location:
      description:
        - Path of the image file in the image store on the controller, or for an image of a real Glance
          C(glance+<glance_url>/v2/images/<id>).
      type: str
      returned: success, except in check mode when the image would be created
      sample: /root/.bootflow/images/9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b
    properties:
      description: Image properties.
      type: dict
      returned: success, except in check mode when the image would be created
      sample: {"os_distro": "debian", "os_version": "12"}
    min_disk:
      description: Smallest root disk in GiB.
      type: int
      returned: success, except in check mode when the image would be created
      sample: 3
    min_ram:
      description: Smallest memory in MiB.
      type: int
      returned: success, except in check mode when the image would be created
      sample: 512
    created_at:
      description: Creation time, UTC, ISO 8601.
      type: str
      returned: success, except in check mode when the image would be created
      sample: "2025-01-10T09:15:02.123456Z"
    updated_at:
      description: Time of the last status or visibility change, UTC, ISO 8601.
      type: str
      returned: success, except in check mode when the image would be created
      sample: "2025-01-10T09:15:09.654321Z"
image_backend:
  description: The image backend used, V(local) or V(glance).
  returned: success
  type: str
  sample: glance
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid or expired token, a missing role, another project's image to
      change, or a O(filename) the caller may not read (outside the upload directory, or in bootflow's state);
      V(invalid) for a missing file, a format mismatch, no file for a new image, a O(url) the operator's import
      filters refuse, or an image over the size cap; V(quota) for an image over the project's image quota;
      V(not_found) for no image to deactivate; V(conflict) for a name with different content, several images of
      that name, an image still in use, or a status that cannot be deactivated or reactivated.
  returned: failure
  type: str
  sample: conflict
"""
