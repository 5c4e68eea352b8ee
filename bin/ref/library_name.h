/* library_name: what the reference programs in bin/ref/ print as the MPI they were built against,
 * "MPICH Version: 4.0.2" / "Open MPI v4.1.4": the library's own text (MPI_Get_library_version)
 * up to its first newline or comma, tabs and runs of spaces made single spaces. */
#ifndef MYRIXEN_REF_LIBRARY_NAME_H
#define MYRIXEN_REF_LIBRARY_NAME_H
#include <mpi.h>
#include <stdio.h>
#include <string.h>

static void library_name(char *out, int len) {
    char text[MPI_MAX_LIBRARY_VERSION_STRING];
    int n;
    MPI_Get_library_version(text, &n);
    text[strcspn(text, "\n,")] = '\0';
    for (char *p = text; *p; p++) if (*p == '\t') *p = ' ';
    char *s = text;
    while (*s == ' ') s++;
    char *e = s + strlen(s);
    while (e > s && e[-1] == ' ') *--e = '\0';
    int squeezed = 0; /* "MPICH Version:  4.0.2" -> single spaces */
    for (char *p = s; *p; p++) if (!(*p == ' ' && p[1] == ' ')) s[squeezed++] = *p;
    s[squeezed] = '\0';
    snprintf(out, len, "%s", s);
}
#endif
