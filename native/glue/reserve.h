// reserve.h: network and IPC namespaces made ahead of the containers that will use them.
#pragma once

#include <vector>

namespace nsbox_glue {

// Takes one ready network namespace into *net and one IPC namespace (an empty one, for containers
// without a user namespace) into *ipc, each an O_CLOEXEC fd the caller owns and closes, or -1 when
// none is ready: the caller then creates it in its clone as usual. A null pointer asks for none of
// that kind. Never blocks on the making of one. The first call starts the maker thread; each call
// asks it to top the reserves up again.
void reserve_take(int* net, int* ipc);

// The reserves' sizes (0-64 each) and whether the mount namespace template is made, as lib/env.ts
// reads them from the environment. Called once, when the addon is loaded, before any of the above.
void reserve_configure(int net, int ipc, bool mnt_template_on);

// For leak checks: the fds the reserve holds now, and whether the maker is between a clone and
// adding its result, of either kind (then an fd of it may exist that is not listed yet).
void netns_state(std::vector<int>* fds, bool* busy, int* target, int* failures);
void ipcns_state(std::vector<int>* fds, bool* busy, int* target, int* failures);

// The mount namespace template (nsbox::make_mnt_template), made on first use and kept for the life
// of the process: its fd, or -1 when it cannot be made here (then containers use CLONE_NEWNS and
// pivot_root) or reserve_configure turned it off. Thread-safe; blocks only while the first caller
// makes it.
int mnt_template();
// Whether an image's overlay root can be made in the template (the kernel mounts an overlay whose
// upper layer is a detached tmpfs: Linux 6.15 on); false without a template.
bool mnt_template_overlay();
// For probes and leak checks: the fd (-1: none), whether making it was tried, its errno, and
// mnt_template_overlay's answer.
void mnt_template_state(int* fd, bool* tried, int* err, bool* overlay);

}  // namespace nsbox_glue
