/* Ramp-up weights of the unsupervised terms (UA-MT's sigmoid_rampup / linear_rampup). */
#include <math.h>

#include "diffcl/loss.h"

double diffcl_rampup_sigmoid(double mu, double t, double length)
{
    if (!(length > 0)) return mu;
    double c = t < 0 ? 0 : (t > length ? length : t);
    double phase = 1.0 - c / length;
    return mu * exp(-5.0 * phase * phase);
}

double diffcl_rampup_linear(double mu, double t, double length)
{
    if (!(length > 0)) return mu;
    double c = t < 0 ? 0 : (t > length ? length : t);
    return mu * (c / length);
}
