#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: guest
short_description: Manage libvirt guests (domains) declaratively
version_added: 0.1.0
description:
  - Defines, updates, starts, pauses, stops and removes libvirt guests (KVM/QEMU, Xen, and the test driver).
  - Idempotency is semantic. The module compares what you asked for with what libvirt has and ignores
    what libvirt fills in by itself (PCI addresses, aliases, generated MAC addresses, default
    controllers). Settings you do not give are kept on an existing guest.
  - A device class given as a list (O(disks), O(interfaces)) is the full desired list of that
    class. A device class you do not give is left alone.
  - On a running guest, changes go to the persistent definition. vCPU count (up to the maximum the
    guest was started with), balloon memory (O(current_memory), up to the memory the guest was
    started with) and the I/O limits of disks the running guest has are also applied live. For
    anything else (and for a live step libvirt refuses, with a warning) the result says
    RV(reboot_required=true); O(state=restarted) applies it.
  - A new guest can be a clone of a stopped guest or template (O(clone_from)), full or linked (qcow2 overlays).
  - "When a task fails after it has already changed something, the failure says so: C(changed=true),
    RV(actions) lists the steps done and the message ends with C(already done: ...; not done: ...) in parentheses.
    A new guest whose start fails is undefined again, so that the failed task changed nothing."
author:
  - virtops.libvirt maintainers (@virtops)
extends_documentation_fragment:
  - virtops.libvirt.connection
  - virtops.libvirt.connection.ACTIONGROUP
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Returns the domain XML before and after in diff mode.
    support: full
  idempotent:
    description: Running the same task twice changes nothing the second time.
    support: partial
    details: Every state but V(restarted), which always restarts (or starts) the guest.
options:
  name:
    description: Name of the guest.
    type: str
    required: true
    version_added: 0.1.0
  state:
    description:
      - V(present) defines the guest (or updates its definition) and leaves its run state alone.
      - V(running) also starts it (resumes a paused guest).
      - V(paused) starts it paused or pauses a running guest.
      - V(stopped) shuts it down gracefully (ACPI) and waits until it is off, at most
        O(shutdown_timeout) seconds. After that it is powered off only with O(force=true).
        A paused guest is resumed for the shutdown; when it does not go down in time (without
        O(force)) it is paused again and the task fails, leaving it as it was.
      - V(restarted) restarts a running (or paused) guest - graceful shutdown as for V(stopped),
        powered off after O(shutdown_timeout) only with O(force=true), then started, so that a
        changed definition applies (RV(reboot_required) is then false) - and starts a stopped
        guest. Always reports a change (not idempotent).
      - V(absent) stops it like V(stopped) and undefines it, with its NVRAM, the state of its
        emulated TPM (C(/var/lib/libvirt/swtpm/<uuid>)), managed save image and snapshot metadata.
        On the local C(qemu:///system) it also deletes the TPM state and NVRAM a guest left when its
        TPM was removed or its firmware switched from UEFI to BIOS (libvirt's undefine no longer
        knows of them).
        With O(delete_volumes=true) the storage volumes of its disks are deleted too.
    type: str
    choices: [present, running, stopped, paused, restarted, absent]
    default: present
    version_added: 0.1.0
  xml:
    description:
      - Full domain XML, instead of the typed options (mutually exclusive with them).
      - A guest defined from O(xml) keeps a digest of that XML and of what libvirt made of it in
        its C(<metadata>) (namespace C(https://virtops.dev/xmlns/libvirt/applied/1)). A re-run with
        the same XML is unchanged whatever libvirt normalised (machine aliases, implicit devices,
        automatic ports); a change made outside (for example C(virsh edit)) is detected and
        corrected. A guest without that record (defined by other tools) is compared semantically.
      - Graphics passwords are compared when the connection may read them
        (C(VIR_DOMAIN_XML_SECURE)); they never appear in the diff, and their values are masked
        wherever Ansible prints the task (its invocation included), as a C(no_log) option is.
      - The existing UUID and generated MAC addresses are kept when the XML does not state them.
      - The C(<name>) in the XML must equal O(name).
    type: str
    version_added: 0.1.0
  domain_type:
    description:
      - Hypervisor type. Default for a new guest is V(kvm) when the host supports hardware
        virtualization, else V(qemu) (software emulation, TCG). V(test) is the libvirt test driver.
      - Cannot be changed on an existing guest.
    type: str
    choices: [kvm, qemu, xen, test]
    version_added: 0.1.0
  memory:
    description:
      - Maximum memory. A size with unit (V(512MiB), V(2GiB), V(4G)) or an integer in MiB.
      - Default for a new guest is 512 MiB.
      - At least 1 MiB and at most 64 TiB, more than any host has (a bare number being MiB,
        V(1073741824) would be 1 PiB). More than the host's memory is accepted with a warning.
      - Raising it on a running guest applies at its next boot (RV(reboot_required=true)).
    type: raw
    version_added: 0.1.0
  current_memory:
    description:
      - Memory the guest actually gets (balloon target); at most O(memory). Applied live on a running guest.
      - Default for a new guest is O(memory). On an existing guest it is left as it is when only
        O(memory) changes (lowered to O(memory) when that goes below it).
      - On a running guest the balloon is set live up to the memory the guest was started with.
    type: raw
    version_added: 0.1.0
  vcpus:
    description:
      - Number of active vCPUs. Applied live on a running guest when it does not exceed O(max_vcpus).
      - Default for a new guest is 1.
    type: int
    version_added: 0.1.0
  max_vcpus:
    description: Maximum vCPUs (hot-plug limit). Default is O(vcpus).
    type: int
    version_added: 0.1.0
  cpu:
    description:
      - CPU model configuration. For a new KVM guest the default is host-model; a QEMU (TCG) guest gets
        the hypervisor's default.
    type: dict
    version_added: 0.1.0
    suboptions:
      mode:
        description: CPU mode. V(custom) requires O(cpu.model).
        type: str
        choices: [host-passthrough, host-model, custom, maximum]
      model:
        description: Named CPU model for V(custom) mode, for example V(Skylake-Server) or V(qemu64).
        type: str
      migratable:
        description: With V(host-passthrough), whether to drop features that block migration.
        type: bool
      topology:
        description: CPU topology. Missing values default to 1.
        type: dict
        suboptions:
          sockets:
            description: Sockets.
            type: int
          dies:
            description: Dies per socket.
            type: int
          cores:
            description: Cores per die.
            type: int
          threads:
            description: Threads per core.
            type: int
  machine:
    description: Machine type, for example V(pc), V(q35). The hypervisor's default when not given.
    type: str
    version_added: 0.1.0
  arch:
    description: Guest CPU architecture. Default is the host's.
    type: str
    version_added: 0.1.0
  os_type:
    description:
      - OS type. V(hvm) is a fully virtualized guest. V(xen) (or V(linux)) is a Xen paravirtualized guest.
      - Default for a new guest is V(hvm).
    type: str
    choices: [hvm, xen, linux]
    version_added: 0.1.0
  firmware:
    description:
      - V(bios) or V(efi) (needs OVMF on the host). UEFI uses libvirt's firmware auto-selection
        (C(<os firmware='efi'>)); libvirt picks the image from the host's firmware descriptors when
        the guest starts and keeps its NVRAM variables in C(/var/lib/libvirt/qemu/nvram/).
      - Default for a new guest is V(bios), or V(efi) with O(secure_boot=true).
      - A change on an existing guest is a change of its definition; a running guest reports
        RV(reboot_required).
    type: str
    choices: [bios, efi]
    version_added: 0.1.0
  secure_boot:
    description:
      - UEFI Secure Boot. V(true) selects a Secure Boot firmware (the C(secure-boot) feature of
        libvirt's firmware auto-selection; Debian's C(ovmf) has C(OVMF_CODE_4M.ms.fd) or
        C(OVMF_CODE_4M.secboot.fd)) and turns SMM on (C(<features><smm state='on'/>)), which that
        firmware needs. Implies O(firmware=efi); needs a q35 machine (O(machine=q35)) on x86.
      - V(false) selects a UEFI firmware without Secure Boot. Nothing for a BIOS guest.
      - Not given, the firmware's Secure Boot is left as it is.
      - The choice lives in the guest's NVRAM variables too (made from the firmware's template at
        its first start, and kept by libvirt); changing it on an existing UEFI guest that states
        its choice (or runs) fails naming this option, instead of a redefinition that would not
        take effect. Remove the guest (V(absent) deletes its NVRAM) and create it again.
        A guest whose XML states no choice (C(<os firmware='efi'>) alone, as C(virt-install --boot
        uefi) writes it) gets it stated.
    type: bool
    version_added: 0.1.0
  enrolled_keys:
    description:
      - With O(secure_boot=true), V(true) (the default for a new guest) boots with Microsoft's
        keys enrolled in the NVRAM template (C(OVMF_VARS_4M.ms.fd)), so Secure Boot is enforced;
        V(false) boots the Secure Boot firmware without keys (setup mode, nothing is verified until
        keys are enrolled from inside the guest).
      - Only with O(secure_boot=true). Not given on an existing guest, its keys are left as they
        are. A change on an existing guest is refused as for O(secure_boot).
    type: bool
    version_added: 0.1.0
  tpm:
    description:
      - A TPM emulated by C(swtpm) (C(<tpm><backend type='emulator'/>)). Its state (keys, NVRAM of
        the TPM, e.g. BitLocker's) persists across restarts and redefinitions in
        C(/var/lib/libvirt/swtpm/<uuid>), and is removed with the guest (O(state=absent)).
      - V({}) gives a TPM 2.0 on the CRB interface, as Windows 11 asks for.
      - Adding or changing it on a running guest reports RV(reboot_required).
    type: dict
    version_added: 0.1.0
    suboptions:
      model:
        description: The TPM interface. V(tpm-crb) is TPM 2.0 only.
        type: str
        choices: [tpm-crb, tpm-tis]
        default: tpm-crb
      version:
        description:
          - The TPM version the emulator provides. The state of an existing TPM is for its version;
            a change fails naming this option (remove the TPM first with O(tpm.state=absent)).
        type: str
        choices: ['2.0', '1.2']
        default: '2.0'
      state:
        description:
          - V(absent) removes the TPM from the definition. Its state stays (adding the TPM again
            resumes it); libvirt removes it only with a guest that still has the TPM, so
            O(state=absent) deletes such a leftover itself on the local C(qemu:///system) (on a
            remote host it stays in C(/var/lib/libvirt/swtpm/<uuid>)).
        type: str
        choices: [present, absent]
        default: present
  boot:
    description: Boot configuration.
    type: dict
    version_added: 0.1.0
    suboptions:
      order:
        description: Boot device order.
        type: list
        elements: str
        choices: [hd, cdrom, network, fd]
      kernel:
        description: Kernel path on the host for direct kernel boot. V('') removes it.
        type: str
      initrd:
        description: Initrd path on the host for direct kernel boot. V('') removes it.
        type: str
      cmdline:
        description: Kernel command line for direct kernel boot. V('') removes it.
        type: str
      menu:
        description: Show the firmware boot menu.
        type: bool
  disks:
    description:
      - The full list of the guest's disks (C(<disk>) devices). Disks are matched to existing ones by O(disks[].target).
      - Source is either O(disks[].pool) + O(disks[].volume) or O(disks[].path).
      - A virtio-scsi controller is added when a disk on the V(scsi) bus needs one.
    type: list
    elements: dict
    version_added: 0.1.0
    suboptions:
      target:
        description: Device name in the guest, for example V(vda), V(sdb), V(hdc), V(xvda).
        type: str
        required: true
      bus:
        description: Bus. Default is derived from O(disks[].target) (vd* virtio, sd* scsi, hd* ide, xvd* xen).
        type: str
        choices: [virtio, scsi, sata, ide, usb, xen, fdc]
      device:
        description: Device kind.
        type: str
        choices: [disk, cdrom, lun, floppy]
        default: disk
      pool:
        description: Storage pool of the source volume (with O(disks[].volume)). Must exist.
        type: str
      volume:
        description: Source volume name in O(disks[].pool). Must exist.
        type: str
      path:
        description: Source file or block device path on the host.
        type: str
      format:
        description: Image format, for example V(raw) or V(qcow2). Default is the volume's own format, or raw.
        type: str
      cache:
        description: Cache mode.
        type: str
        choices: [default, none, writethrough, writeback, directsync, unsafe]
      io:
        description: I/O mode.
        type: str
        choices: [threads, native, io_uring]
      discard:
        description: Discard (TRIM) handling.
        type: str
        choices: [ignore, unmap]
      readonly:
        description: Read-only disk. CD-ROMs are always read-only.
        type: bool
      serial:
        description: Disk serial number shown to the guest.
        type: str
      boot_order:
        description: Per-device boot order (mutually exclusive with O(boot.order)).
        type: int
      iotune:
        description: I/O limits, applied live on a running guest.
        type: dict
        suboptions:
          total_bytes_sec:
            description: Total throughput limit in bytes per second.
            type: int
          read_bytes_sec:
            description: Read throughput limit in bytes per second.
            type: int
          write_bytes_sec:
            description: Write throughput limit in bytes per second.
            type: int
          total_iops_sec:
            description: Total I/O operations per second.
            type: int
          read_iops_sec:
            description: Read I/O operations per second.
            type: int
          write_iops_sec:
            description: Write I/O operations per second.
            type: int
      encryption:
        description:
          - The libvirt secret a LUKS-encrypted disk is opened with (QEMU decrypts it; the guest sees plain data).
          - Not needed for a disk from a LUKS volume of a pool (O(disks[].pool) + O(disks[].volume), or a
            O(disks[].path) that is a storage volume) gets the secret the volume's XML names (see
            M(virtops.libvirt.volume) O(virtops.libvirt.volume#module:encryption)). Give it for an encrypted file
            libvirt knows no volume of, or when the volume's XML names no secret.
          - Encryption given for a volume that is not encrypted, a missing secret, or one that is not of usage type
            V(volume) fails and changes nothing. A wrong secret value makes starting the guest fail (QEMU cannot
            unlock the disk); the guest then stays shut off.
        type: dict
        version_added: 0.1.0
        suboptions:
          secret_uuid:
            description: The UUID of the volume secret. Mutually exclusive with O(disks[].encryption.secret_usage).
            type: str
            version_added: 0.1.0
          secret_usage:
            description: The usage id (a path) of the volume secret.
            type: str
            version_added: 0.1.0
  interfaces:
    description:
      - The full list of the guest's network interfaces (SR-IOV C(type=hostdev) interfaces are managed by
        M(virtops.libvirt.hostdev) and left alone here).
      - Matched to existing interfaces by O(interfaces[].mac) when given, else by position. Generated MACs are kept.
    type: list
    elements: dict
    version_added: 0.1.0
    suboptions:
      type:
        description: Interface type.
        type: str
        choices: [network, bridge, direct, user]
        default: network
      source:
        description: Network name, bridge name or host device (for V(direct)). Not used for V(user).
        type: str
      model:
        description: NIC model. Default is V(virtio) (none for Xen).
        type: str
      mac:
        description: MAC address. Generated by libvirt when not given.
        type: str
      mode:
        description: macvtap mode for V(direct).
        type: str
        choices: [bridge, vepa, private, passthrough]
      boot_order:
        description: Per-device boot order.
        type: int
  guest_agent:
    description:
      - Add (V(true)) or remove (V(false)) the C(org.qemu.guest_agent.0) virtio-serial channel the
        QEMU guest agent uses. Default for a new guest is V(true) (V(false) for Xen).
    type: bool
    version_added: 0.1.0
  serial:
    description: Serial console. Default for a new guest is a pty console.
    type: dict
    version_added: 0.1.0
    suboptions:
      type:
        description: V(pty) (interactive, C(virsh console)), V(file) (logged to O(serial.path)) or V(none).
        type: str
        choices: [pty, file, none]
        default: pty
      path:
        description: Log file for V(file).
        type: str
  graphics:
    description: Graphical console, listening on 127.0.0.1. Default for a new guest is V(none).
    type: str
    choices: [none, vnc, spice]
    version_added: 0.1.0
  video:
    description: Video adapter. Default for a new guest is V(none) without graphics, else V(virtio).
    type: str
    choices: [none, virtio, qxl, vga, cirrus, bochs]
    version_added: 0.1.0
  rng:
    description: virtio-rng device fed from the host's /dev/urandom. Default for a new guest is V(true).
    type: bool
    version_added: 0.1.0
  balloon:
    description: virtio memory balloon. Default for a new guest is V(true).
    type: bool
    version_added: 0.1.0
  memory_backing:
    description: Memory backing.
    type: dict
    version_added: 0.1.0
    suboptions:
      hugepages:
        description: Back guest memory with huge pages (they must be reserved on the host).
        type: bool
      nosharepages:
        description: Opt this guest out of KSM page sharing.
        type: bool
  seclabel:
    description: Security label (sVirt) configuration.
    type: dict
    version_added: 0.1.0
    suboptions:
      type:
        description: Label type.
        type: str
        choices: [dynamic, static, none]
        default: dynamic
      model:
        description: Security driver, for example V(selinux), V(apparmor) or V(dac).
        type: str
      label:
        description: Static label.
        type: str
      relabel:
        description: Whether libvirt relabels resources.
        type: bool
  title:
    description: Short title of the guest.
    type: str
    version_added: 0.1.0
  description:
    description: Free-form description of the guest.
    type: str
    version_added: 0.1.0
  autostart:
    description: Start the guest when the host boots.
    type: bool
    version_added: 0.1.0
  shutdown_timeout:
    description: Seconds to wait for a graceful shutdown (V(stopped), V(restarted), V(absent)).
    type: int
    default: 120
    version_added: 0.1.0
  force:
    description: Power the guest off when it has not shut down after O(shutdown_timeout).
    type: bool
    default: false
    version_added: 0.1.0
  wait_for:
    description:
      - With O(state=running) or O(state=restarted), V(agent) returns only when the QEMU guest
        agent answers.
      - Refused before anything changes when the guest has no guest agent channel
        (O(guest_agent=false)), or runs without one.
    type: str
    choices: [none, agent]
    default: none
    version_added: 0.1.0
  wait_timeout:
    description: Seconds to wait for O(wait_for).
    type: int
    default: 300
    version_added: 0.1.0
  delete_volumes:
    description: With O(state=absent), also delete the storage volumes of the guest's disks.
    type: bool
    default: false
    version_added: 0.1.0
  cloud_init:
    description:
      - A cloud-init NoCloud seed for the guest, as cloud images expect it. The module writes the files
        C(user-data), C(meta-data) and (with O(cloud_init.network_config)) C(network-config) into an ISO 9660
        image (Joliet and Rock Ridge names, volume label C(cidata)), built in pure Python on the managed host, stores
        it as the raw volume C(<name>-cidata.iso) in O(cloud_init.pool) and attaches it as a read-only CD-ROM
        (bus C(sata) on q35 machines, C(ide) on pc/i440fx, C(scsi) elsewhere).
      - Idempotent. The same options give the same image byte for byte, and the module compares it with the
        volume's content (a seed is small). When the content differs, the module rebuilds the volume and returns
        RV(reboot_required=true) for a running guest, because cloud-init reads the seed when the guest boots. If the
        instance-id stays the same, a warning says that cloud-init runs its per-instance modules (users, write_files,
        runcmd...) again only when the instance-id changes.
      - Secrets are found in O(cloud_init.user_data) and O(cloud_init.network_config) by key name (keys
        containing C(pass) (C(passwd), C(hashed_passwd), C(plain_text_passwd), C(password)), C(secret),
        C(token), C(private) or C(psk), plus C(chpasswd.list)) and as private key blocks. Their values are
        masked wherever Ansible prints the task. The diff shows the seed's files with those values replaced by
        C(<secret>). A user-data that is not C(#cloud-config), such as a script, is shown by its digest only. Secrets
        inside a script are not detected; use C(no_log) on such a task.
      - Omitted, the module leaves an existing seed CD-ROM and its volume as they are, and O(disks) never removes
        the seed CD-ROM. With O(cloud_init.state=absent) the CD-ROM is detached and the volume deleted. With
        O(state=absent), the module deletes the seed volume with the guest, whatever O(delete_volumes) says, because
        the module made that volume for this guest only.
      - Mutually exclusive with O(xml).
    type: dict
    version_added: 0.1.0
    suboptions:
      user_data:
        description:
          - The user-data. A dict is written as C(#cloud-config) followed by the dict as YAML. A string is written
            as it is (a C(#cloud-config) text, a C(#!) script, a MIME multi-part document...).
          - Omitted, the user-data file is empty.
        type: raw
        version_added: 0.1.0
      meta_data:
        description:
          - The meta-data, as YAML. Defaults C(instance-id) and C(local-hostname) to the guest's O(name).
            Keys given here override them.
          - Change C(instance-id) to make cloud-init run its per-instance modules again on an existing guest.
        type: dict
        version_added: 0.1.0
      network_config:
        description:
          - The network configuration (C(network-config) file), as cloud-init takes it. Netplan-style version 2
            (C(version), C(ethernets)...) or version 1 (C(version), C(config)).
          - Omitted, there is no network-config file and cloud-init uses its default (DHCP on the first NIC).
        type: dict
        version_added: 0.1.0
      pool:
        description:
          - The storage pool of the seed volume. It must exist and be active.
          - Defaults to the pool the seed is in already, else the pool of the guest's first disk when that disk is
            a storage volume, else C(default).
        type: str
        version_added: 0.1.0
      state:
        description:
          - V(absent) detaches the seed CD-ROM and deletes the seed volume.
          - An empty O(cloud_init) (V({})) is a seed with only the default meta-data and an empty user-data.
        type: str
        choices: [present, absent]
        default: present
        version_added: 0.1.0
  clone_from:
    description:
      - Create the guest as a clone of another guest (a template) on the same connection, as
        C(virt-clone) does. Used only when the guest O(name) does not exist. Once it exists, O(clone_from)
        is not used again (not even read), so the task stays idempotent by the clone's name and the
        source may change or go away.
      - The source must be stopped. A running or paused source, or a source that does not exist, is
        refused and nothing is made.
      - The clone gets the source's definition with a new UUID (and SMBIOS UUID), a new MAC address on every
        interface, and its own copy of each writable disk volume. Read-only and shareable disks (ISO images)
        are shared. The source's cloud-init seed CD-ROM is left out. Give O(cloud_init) in the same task to
        give the clone its own seed.
      - A UEFI guest's NVRAM file (boot entries) is copied to the clone's own file in the same directory. The
        NVRAM file of a guest with O(firmware=efi) is found in libvirt's C(/var/lib/libvirt/qemu/nvram) on
        C(qemu:///system). If the source has never started it has no NVRAM file, and the clone gets fresh
        variables at its first start.
      - The other options of the task (O(memory), O(vcpus), O(interfaces), O(cloud_init)...) apply on top of
        the cloned definition. O(disks) cannot be combined with O(clone_from). The clone's disks are its copies
        of the source's disks.
      - Each disk volume of the clone is C(<name>-<target>.qcow2) (C(.img) for a raw full copy) in the source
        volume's pool or O(clone_from.pool). A volume with that name that exists already is refused. Every disk
        to clone must be a storage volume libvirt knows.
      - When a step fails (copying the second disk, the define...), the volumes (and NVRAM) made for the clone
        are deleted again and nothing is defined. The task reports no change.
      - Check and diff mode show what a create-by-clone would do. The actions name each new volume, and the diff
        shows the clone's definition after comments naming its volumes.
      - Mutually exclusive with O(xml) and O(disks).
    type: dict
    version_added: 0.1.0
    suboptions:
      guest:
        description: The source guest or template (a stopped guest on the same connection).
        type: str
        required: true
        version_added: 0.1.0
      mode:
        description:
          - V(full) copies each disk volume (raw stays raw, qcow2 stays qcow2; a qcow2 with a backing chain
            becomes one flat image). libvirt copies the data (C(qemu-img convert) for qcow2).
          - V(linked) creates a qcow2 overlay for each disk, whose backing file is the source's volume. It is fast
            and small, but the source's volumes must never change afterwards. QEMU refuses to start the source
            while a linked clone runs, and writing to a source that has linked clones corrupts them.
        type: str
        choices: [full, linked]
        default: full
        version_added: 0.1.0
      pool:
        description:
          - The storage pool of the clone's volumes. It must exist and be active.
          - Defaults to the pool of each source volume.
        type: str
        version_added: 0.1.0
      disks:
        description:
          - Per-disk exceptions to O(clone_from.mode) and O(clone_from.pool), by the disk's target. The disks not
            listed follow O(clone_from.mode) and O(clone_from.pool).
          - A target the source does not have, or a disk the clone shares (read-only, shareable, CD-ROM), is
            refused.
        type: list
        elements: dict
        version_added: 0.1.0
        suboptions:
          target:
            description: The target of one of the source's disks, for example V(vdb).
            type: str
            required: true
            version_added: 0.1.0
          mode:
            description: V(full) or V(linked) for this disk. Defaults to O(clone_from.mode).
            type: str
            choices: [full, linked]
            version_added: 0.1.0
          pool:
            description: The storage pool of this disk's new volume. Defaults to O(clone_from.pool).
            type: str
            version_added: 0.1.0
seealso:
  - module: virtops.libvirt.guest_info
  - module: virtops.libvirt.guest_agent
  - name: libvirt domain XML format
    description: Reference of every element the typed options produce.
    link: https://libvirt.org/formatdomain.html
"""

EXAMPLES = r"""
- name: A small guest booting a kernel directly, started and waited for through its agent
  virtops.libvirt.guest:
    name: web1
    memory: 512MiB
    vcpus: 1
    boot:
      kernel: /var/lib/libvirt/images/vmlinuz
      initrd: /var/lib/libvirt/images/initrd.img
      cmdline: console=ttyS0
    disks:
      - target: vda
        pool: default
        volume: web1.qcow2
    interfaces:
      - type: user
    state: running
    wait_for: agent

- name: Grow a running guest to 2 vCPUs (live, no reboot when max_vcpus allows it)
  virtops.libvirt.guest:
    name: web1
    vcpus: 2
    max_vcpus: 4

- name: A Windows 11-style guest (q35, UEFI Secure Boot with Microsoft's keys, TPM 2.0)
  virtops.libvirt.guest: {name: win11, machine: q35, secure_boot: true, tpm: {}, memory: 4GiB, vcpus: 2}

- name: Secure Boot firmware without enrolled keys (setup mode), emulated TPM 2.0 on the TIS interface
  virtops.libvirt.guest:
    name: sb-lab
    machine: q35
    secure_boot: true
    enrolled_keys: false
    tpm:
      model: tpm-tis

- name: Define a guest from full XML (idempotent, UUID and MACs kept)
  virtops.libvirt.guest:
    name: legacy1
    xml: "{{ lookup('ansible.builtin.file', 'legacy1.xml') }}"

- name: Shut down gracefully, power off after 60 s if the guest ignores ACPI
  virtops.libvirt.guest:
    name: web1
    state: stopped
    shutdown_timeout: 60
    force: true

- name: Restart a guest to apply changes that need a reboot (force off after 60 s)
  virtops.libvirt.guest:
    name: web1
    state: restarted
    shutdown_timeout: 60
    force: true
  when: result.reboot_required

- name: A guest on a cloud image overlay, provisioned by cloud-init
  virtops.libvirt.guest:
    name: app1
    memory: 1GiB
    disks:
      - target: vda
        pool: default
        volume: app1.qcow2
    interfaces:
      - source: default
    cloud_init:
      user_data:
        users:
          - name: admin
            groups: [sudo]
            shell: /bin/bash
            ssh_authorized_keys:
              - "{{ lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub') }}"
        write_files:
          - path: /etc/motd
            content: |
              Managed by Ansible
        runcmd:
          - systemctl enable --now qemu-guest-agent
      network_config:
        version: 2
        ethernets:
          eth0:
            addresses: [198.51.100.10/28]
            routes:
              - to: default
                via: 198.51.100.1
    state: running
    wait_for: agent

- name: Three guests cloned from a stopped template, each with its own cloud-init seed
  virtops.libvirt.guest:
    name: "web{{ item }}"
    clone_from:
      guest: debian12-template
      mode: linked
    memory: 1GiB
    cloud_init:
      meta_data:
        local-hostname: "web{{ item }}"
    state: running
  loop: [1, 2, 3]

- name: Detach the cloud-init seed and delete its volume
  virtops.libvirt.guest:
    name: app1
    cloud_init:
      state: absent

- name: Remove a guest and the volumes of its disks
  virtops.libvirt.guest:
    name: web1
    state: absent
    delete_volumes: true
"""

RETURN = r"""
guest:
  description: The guest after the task (predicted in check mode).
  returned: always
  type: dict
  contains:
    name:
      description: Guest name.
      type: str
      sample: web1
    uuid:
      description: Guest UUID (null in check mode for a guest not yet defined).
      type: str
      sample: 0d9b4c5e-4d62-4a4e-8a8e-7a3b9a0c2f11
    state:
      description:
        - Run state. One of V(running), V(paused), V(stopped), V(shutting_down), V(crashed),
          V(pmsuspended), V(absent).
      type: str
      sample: running
    autostart:
      description: Whether the guest starts with the host.
      type: bool
    persistent:
      description: Whether the guest has a persistent definition.
      type: bool
    xml:
      description: Persistent domain XML (inactive definition).
      type: str
reboot_required:
  description:
    - True when the running guest's live configuration differs from its new definition in a way
      that needs a restart.
  returned: always
  type: bool
actions:
  description: What was changed (or would be, in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample: ["disk vdb added", "guest 'web1' started"]
cloud_init:
  description: The guest's cloud-init seed after the task (predicted in check mode).
  returned: when O(cloud_init) is given and O(state) is not V(absent)
  type: dict
  contains:
    state:
      description: V(present) or V(absent).
      type: str
      sample: present
    pool:
      description: The storage pool of the seed volume.
      type: str
      sample: default
    volume:
      description: The seed volume.
      type: str
      sample: app1-cidata.iso
    sha256:
      description: The SHA-256 of the seed image.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    files:
      description: The files of the seed.
      type: list
      elements: str
      sample: [meta-data, network-config, user-data]
clone:
  description: What the clone was made of, when this task created the guest by cloning (predicted in check mode).
  returned: when the guest was created from O(clone_from)
  type: dict
  contains:
    source:
      description: The source guest.
      type: str
      sample: debian12-template
    mode:
      description: V(full) or V(linked).
      type: str
      sample: linked
    volumes:
      description: The clone's new volumes, as C(pool/volume).
      type: list
      elements: str
      sample: [default/web1-vda.qcow2]
    nvram:
      description: The clone's NVRAM file copied from the source's (null when there was none to copy).
      type: str
      sample: /var/lib/libvirt/qemu/nvram/web1_VARS.fd
agent_wait_seconds:
  description: Seconds waited until the guest agent answered.
  returned: when O(wait_for=agent) and the guest was waited for
  type: float
"""

from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import run_module
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.manager import GuestManager
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.options import SPEC


def main():
    run_module(SPEC, GuestManager)


if __name__ == '__main__':
    main()
