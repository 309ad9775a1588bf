{
  # Built offline against the machine's own Node headers (node-gyp rebuild
  # --nodedir=/usr: scripts/build.js), linking the library that meson built
  # in ../build (or $RATEQUEUE_BUILD), found at run time through its rpath.
  "variables": {
    "rq_build%": "<!(node -p \"require('path').resolve(process.env.RATEQUEUE_BUILD || '../build')\")"
  },
  "targets": [{
    "target_name": "ratequeue",
    "sources": ["src/addon.cc"],
    "include_dirs": [
      "<!(node -p \"require('node-addon-api').include_dir\")",
      "../include",
      "<(rq_build)/include"
    ],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
    "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
    "libraries": ["-L<(rq_build)/src", "-lratequeue", "-Wl,-rpath,<(rq_build)/src"]
  }]
}
