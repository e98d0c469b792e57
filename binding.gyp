{
  "variables": {
    "hardening": ["-Wall", "-Wextra", "-Werror", "-fstack-protector-strong", "-fvisibility=hidden", "-D_GNU_SOURCE"]
  },
  "targets": [
    {
      # The child path and the other raw-syscall pieces: no napi.h reachable, no exceptions, no RTTI.
      "target_name": "nsbox_core",
      "type": "static_library",
      "sources": [
        "native/core/child.cc",
        "native/core/fsops.cc",
        "native/core/mnt_template.cc",
        "native/core/spawn.cc",
        "native/core/probe.cc",
        "native/core/netlink.cc",
        "native/core/devices.cc",
        "native/core/pty.cc"
      ],
      "cflags": ["<@(hardening)", "-fPIC"],
      "cflags_cc": ["-std=c++17", "-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fexceptions", "-frtti"]
    },
    {
      "target_name": "nsbox",
      "sources": ["native/glue/addon.cc", "native/glue/plan_reader.cc", "native/glue/watchers.cc", "native/glue/fds.cc", "native/glue/test_hooks.cc", "native/glue/net.cc", "native/glue/reserve.cc", "native/glue/fsat.cc"],
      "dependencies": ["nsbox_core", "nsbox_init"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags": ["<@(hardening)", "-Wno-missing-field-initializers"],
      "cflags_cc": ["-std=c++17", "-fno-exceptions"],
      "cflags_cc!": ["-fexceptions"]
    },
    {
      # The bundled PID 1: static, without libc, a few KB. Built by a plain compiler call so that
      # none of node-gyp's shared-library flags reach it.
      "target_name": "nsbox_init",
      "type": "none",
      "actions": [
        {
          "action_name": "build_init",
          "inputs": ["native/init/init.c", "native/init/nolibc.h", "native/core/steps.h", "native/init/build.sh"],
          "outputs": ["<(PRODUCT_DIR)/nsbox-init"],
          "action": ["sh", "native/init/build.sh", "<(PRODUCT_DIR)/nsbox-init"]
        }
      ]
    }
  ]
}
