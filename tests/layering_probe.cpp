// Built only by the test upward_include_is_a_build_error, as part of the lowest layer
// (vae_base): it includes a header of a higher layer, which that layer cannot see.
#include "vae_ddp/train/trainer.h"
