#include "diffcl/version.h"

unsigned diffcl_version_number(void)
{
    return DIFFCL_VERSION_NUMBER;
}

const char *diffcl_version_string(void)
{
    return DIFFCL_VERSION_STRING;
}
