{
  "targets": [
    {
      "target_name": "podcrypt_native",
      "sources": ["native/addon.cc", "native/tun.cc", "native/poll.cc", "native/udp.cc", "native/aead.cc", "native/esp.cc", "native/netns.cc", "native/capture.cc", "native/offload.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions"]
    }
  ]
}
