/* The file LAMMPS loads (its name ends in plugin.so). It links neither LAMMPS nor torch: it loads
   the implementation library with RTLD_DEEPBIND so that libtorch binds its own BLAS and OpenMP.

   Why: `lmp` links liblammps.so, which exports reference BLAS (dgemm_, dgemv_, daxpy_, ...). A
   plugin loaded into that global scope makes libtorch_cpu's dgemm_ calls resolve to liblammps'
   slow reference implementation (float64 matmuls measured 3-5x slower inside lmp). With
   RTLD_DEEPBIND the implementation library and its dependencies look up symbols in their own
   scope first; LAMMPS' classes, which it does not link, still resolve from the global scope. */

#include "lammpsplugin.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <string>

typedef void (*register_fn)(void *, void *, void *);

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  Dl_info info;
  if (!dladdr((void *) &lammpsplugin_init, &info) || !info.dli_fname) {
    std::fprintf(stderr, "allegro-kan plugin: cannot locate its own file\n");
    return;
  }
  std::string dir(info.dli_fname);
  dir = dir.substr(0, dir.find_last_of('/') + 1);
  const std::string impl = dir + "libpair_allegro_kan.so";
  // KAN_MLIP_NO_DEEPBIND=1 restores plain loading, only to measure the BLAS trap (benchmarks/blas_trap.py)
  const char *no_deepbind = std::getenv("KAN_MLIP_NO_DEEPBIND");
  const int flags = (no_deepbind && no_deepbind[0] == '1') ? (RTLD_NOW | RTLD_GLOBAL) : (RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  void *lib = dlopen(impl.c_str(), flags);
  if (!lib) {
    std::fprintf(stderr, "allegro-kan plugin: cannot load %s: %s\n", impl.c_str(), dlerror());
    return;
  }
  auto fn = (register_fn) dlsym(lib, "kan_mlip_register_plugins");
  if (!fn) {
    std::fprintf(stderr, "allegro-kan plugin: %s lacks kan_mlip_register_plugins\n", impl.c_str());
    return;
  }
  fn(lmp, handle, regfunc);
}
